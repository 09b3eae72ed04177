"""Strict body decoding names the field, including for the NaN and Infinity literals JSON does not have."""

from __future__ import annotations

import pytest

from domain.position import Position
from producers.body import BodyError, decode
from producers.checks import fix_problem
from producers.models import BatchFix, LocationFixBody, RawBatchBody
from producers.recent import RecentFixes
from schemas.cursor import Cursor, InvalidCursorError, decode_cursor


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"latitude": "1", "longitude": 2}', "latitude: Expected `float`, got `str`"),
        (b'{"latitude": NaN, "longitude": 2}', "latitude: NaN and Infinity are not numbers in JSON"),
        (b'{"latitude": 1, "longitude": 2, "metadata": {"a": [1, -Infinity]}}', "metadata.a[1]: NaN and Infinity"),
        (b'{"latitude": 1}', "body: Object missing required field `longitude`"),
        (b'{"latitude": 1, "longitude": 2', "body: Input data was truncated"),
    ],
)
def test_decoding_names_the_field(raw: bytes, message: str) -> None:
    with pytest.raises(BodyError) as caught:
        decode(raw, LocationFixBody)
    assert caught.value.status == 422 and caught.value.message.startswith(message)


def test_batch_items_are_decoded_one_by_one_with_their_index() -> None:
    envelope = decode(b'{"fixes": [{"event_id": 1}]}', RawBatchBody)
    with pytest.raises(BodyError) as caught:
        decode(bytes(envelope.fixes[0]), BatchFix, prefix="fixes[0]")
    assert caught.value.message.startswith("fixes[0].event_id: Expected `uuid`, got `int`")


def test_plausibility_of_times_and_metadata() -> None:
    from datetime import UTC, datetime, timedelta

    now, minute, month = datetime(2026, 11, 26, tzinfo=UTC), timedelta(minutes=1), timedelta(days=30)
    assert fix_problem(now + minute, None, now, 2 * minute, month) is None
    assert "future" in (fix_problem(now + 3 * minute, None, now, 2 * minute, month) or "")
    assert "retention" in (fix_problem(now - 31 * timedelta(days=1), None, now, 2 * minute, month) or "")
    assert (fix_problem(now, {"x": "y" * 4_100}, now, minute, month) or "").startswith("metadata:")


def test_cursors_round_trip_and_junk_is_refused() -> None:
    cursor = Cursor(epoch=3, partition=5, offset=123_456_789_012)
    assert decode_cursor(cursor.encode()) == cursor
    for junk in ("", "!!", "MS4y", "MS4yLi0z", Cursor(1, 2, 3).encode() + "*"):  # "1.2", "1.2.-3"
        with pytest.raises(InvalidCursorError):
            decode_cursor(junk)


def test_recent_fixes_keep_at_least_half_the_capacity_never_more_and_forget_the_oldest() -> None:
    from datetime import UTC, datetime
    from uuid import uuid4

    recent = RecentFixes(capacity=4)
    ids = [("a", "t", datetime.now(UTC), uuid4()) for _ in range(11)]
    for i, identity in enumerate(ids):
        recent.remember(identity, Position(i % 3, 2**40 + i))
        assert len(recent) <= 4
        remembered = [n for n, seen in enumerate(ids[: i + 1]) if recent.cursor_of(seen) is not None]
        assert remembered == list(range(i + 1 - len(remembered), i + 1)), remembered  # the newest, without a gap
        assert min(i + 1, 2) <= len(remembered) <= 4, remembered
    assert [recent.cursor_of(identity) for identity in ids[-2:]] == [Position(0, 2**40 + 9), Position(1, 2**40 + 10)]
    assert recent.cursor_of(ids[0]) is None
    assert recent.cursor_of(("b", "t", ids[-1][2], ids[-1][3])) is None  # another tenant's same event id: not it


def test_recent_fixes_cost_about_a_hundred_bytes_each() -> None:
    """The soak's hour (docs/benchmarks.md): kept as its strings and objects, a fix cost about 500 bytes."""
    import tracemalloc
    from datetime import UTC, datetime
    from uuid import uuid4

    now = datetime.now(UTC)
    ids = [("tenant-a", f"tech-{i % 50}", now, uuid4()) for i in range(50_000)]
    tracemalloc.start()
    try:
        recent = RecentFixes(capacity=100_000)
        before = tracemalloc.get_traced_memory()[0]
        for i, identity in enumerate(ids):
            recent.remember(identity, Position(3, 10_000_000 + i))
        each = (tracemalloc.get_traced_memory()[0] - before) / len(ids)
    finally:
        tracemalloc.stop()
    assert each < 150, f"{each:.0f} bytes a fix"
