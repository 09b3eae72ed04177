"""History chunks: reading the newest fixes out of packed chunks gives what a flat, sorted history would."""

from __future__ import annotations

import random
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.fix_quality import QUALITY_FILTERS, QualityFilter, wanted
from domain.position import Position
from projector.history_chunks import DAY_US, FIX, Item, item_of, judged, newest_fixes, pack, unpack
from projector.store import from_micros
from tests.support.events import location, profile

items_strategy = st.lists(
    st.tuples(st.integers(0, 3 * DAY_US // 3600_000_000), st.booleans(), st.booleans()), min_size=0, max_size=60
)  # (hour of device time, is a fix, is flagged)


@settings(max_examples=300, deadline=None)
@given(
    items_strategy,
    st.integers(1, 10),
    st.integers(0, 80),
    st.integers(0, 80),
    st.integers(0, 25),
    st.sampled_from(QUALITY_FILTERS),
    st.randoms(),
)
def test_newest_fixes_from_chunks_equal_the_flat_history(
    spec: list[tuple[int, bool, bool]],
    batch_size: int,
    start_h: int,
    span_h: int,
    limit: int,
    quality: QualityFilter,
    rnd: random.Random,
) -> None:
    items: list[Item] = [
        judged(
            item_of(location("a", "t", from_micros(hour * 3600_000_000), float(offset), 2.0), Position(3, offset)),
            ("jump",) if flagged else (),
        )
        if is_fix
        else item_of(profile("a", "t", from_micros(hour * 3600_000_000), status="s"), Position(3, offset))
        for offset, (hour, is_fix, flagged) in enumerate(spec)
    ]
    chunks = []  # as the store keeps them: one batch at a time, each packed per day
    for i in range(0, len(items), batch_size):
        chunks.extend(pack(items[i : i + batch_size]))
    assert sum(c.count for c in chunks) == len(items)
    assert all(c.first_at <= i[0] <= c.last_at for c in chunks for i in unpack(c.items))
    start, end = start_h * 3600_000_000, (start_h + span_h) * 3600_000_000

    newest_first = sorted(chunks, key=lambda c: -c.last_at)
    found = newest_fixes(((c.last_at, c.items) for c in newest_first), start, end, limit, quality)

    flat = sorted(
        (i for i in items if i[4] == FIX and start <= i[0] < end and wanted(quality, i[5])),
        key=lambda i: (i[0], Position(i[2], i[3])),
        reverse=True,
    )[:limit]
    assert [(p.event_id, p.recorded_at, p.latitude, p.quality) for p in found] == [
        (str(uuid.UUID(hex=i[1])), from_micros(i[0]), i[6], i[5]) for i in flat
    ]
    assert quality == "all" or all(bool(p.quality) == (quality == "flagged") for p in found)
