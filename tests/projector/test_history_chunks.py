"""History chunks: reading the newest fixes out of packed chunks gives what a flat, sorted history would."""

from __future__ import annotations

import random
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.position import Position
from projector.history_chunks import DAY_US, FIX, Item, newest_fixes, pack, unpack
from projector.store import from_micros

items_strategy = st.lists(
    st.tuples(st.integers(0, 3 * DAY_US // 3600_000_000), st.booleans()), min_size=0, max_size=60
)  # (hour of device time, is a fix)


@settings(max_examples=300, deadline=None)
@given(items_strategy, st.integers(1, 10), st.integers(0, 80), st.integers(0, 80), st.integers(0, 25), st.randoms())
def test_newest_fixes_from_chunks_equal_the_flat_history(
    spec: list[tuple[int, bool]], batch_size: int, start_h: int, span_h: int, limit: int, rnd: random.Random
) -> None:
    items: list[Item] = [
        [
            hour * 3600_000_000,
            uuid.UUID(int=rnd.getrandbits(128)).hex,
            3,
            offset,
            FIX if is_fix else 1,
            float(offset),
            2.0,
            None,
            None,
            None,
            None,
            None,
            None,
        ]
        if is_fix
        else [hour * 3600_000_000, uuid.UUID(int=rnd.getrandbits(128)).hex, 3, offset, 1, None, "s"]
        for offset, (hour, is_fix) in enumerate(spec)
    ]
    chunks = []  # as the store keeps them: one batch at a time, each packed per day
    for i in range(0, len(items), batch_size):
        chunks.extend(pack(items[i : i + batch_size]))
    assert sum(c.count for c in chunks) == len(items)
    assert all(c.first_at <= i[0] <= c.last_at for c in chunks for i in unpack(c.items))
    start, end = start_h * 3600_000_000, (start_h + span_h) * 3600_000_000

    found = newest_fixes(((c.last_at, c.items) for c in sorted(chunks, key=lambda c: -c.last_at)), start, end, limit)

    flat = sorted(
        (i for i in items if i[4] == FIX and start <= i[0] < end),
        key=lambda i: (i[0], Position(i[2], i[3])),
        reverse=True,
    )[:limit]
    assert [(p.event_id, p.recorded_at, p.latitude) for p in found] == [
        (str(uuid.UUID(hex=i[1])), from_micros(i[0]), i[5]) for i in flat
    ]
