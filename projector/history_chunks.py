"""How the SQLite backend keeps the history: one row per technician, batch and day, holding its events packed.

A row (and so an index entry) per event made the history the projector's bottleneck: every B-tree insert costs
about 10 µs on our 2-core machines, more than decoding the event. A *chunk* takes a technician's events of one
batch and one UTC day of device time into a single row, so a backlog of 10,000 events costs a few hundred inserts;
in live operation batches are small and a chunk holds one or a few events. Pure functions; the store does the I/O.

An item is a JSON array; its first four fields say which event it is and where it sits in the log:
``[recorded_at µs, event_id hex, partition, offset, kind, quality, ...]``; ``quality`` is the fix's flags
(``domain/fix_quality.py``; empty for a good fix and for a profile update); then, for a fix, its values in
``FIX_FIELD_NAMES`` order (``schemas/events.py``; an item written before a field was added lacks it: None); for a
profile update, name and status.
``(recorded_at, event_id)`` is the event's identity within its technician: a retry repeats both.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson

from domain.fix_quality import QualityFilter, wanted
from domain.position import Position
from projector.store import HistoryPoint, from_micros, to_micros
from schemas.events import Event, LocationRecorded, QualityFlag, TechnicianUpdated, fix_values

DAY_US = 86_400_000_000
FIX, PROFILE = 0, 1
_QUALITY_AT = 5  # after the item's identity, its place in the log and its kind
_VALUES_AT = 6  # where an item's own values begin

Item = list[Any]
ChunkKey = tuple[int, str]  # (recorded_at µs, event_id hex)


@dataclass(frozen=True, slots=True)
class Chunk:
    """One history row: ``first_at``/``last_at`` bound the device times of its items."""

    first_at: int
    last_at: int
    count: int
    items: bytes


def item_of(event: Event, position: Position) -> Item:
    """The event's item, its fix taken as good (``judged`` sets the flags once the batch is planned)."""
    recorded_at = to_micros(event.recorded_at)
    if isinstance(event, LocationRecorded):
        return [recorded_at, event.event_id.hex, position.partition, position.offset, FIX, [], *fix_values(event.data)]
    assert isinstance(event, TechnicianUpdated)
    return [
        recorded_at,
        event.event_id.hex,
        position.partition,
        position.offset,
        PROFILE,
        [],
        event.data.name,
        event.data.status,
    ]


def judged(item: Item, flags: tuple[QualityFlag, ...]) -> Item:
    """The item with its fix's quality flags."""
    item[_QUALITY_AT] = list(flags)
    return item


def chunk_key(item: Item) -> ChunkKey:
    return item[0], item[1]


def pack(items: Iterable[Item]) -> list[Chunk]:
    """One technician's new items (in log order) as chunks, one per UTC day of device time."""
    by_day: dict[int, list[Item]] = {}
    for item in items:
        by_day.setdefault(item[0] // DAY_US, []).append(item)
    return [
        Chunk(first_at=min(i[0] for i in day), last_at=max(i[0] for i in day), count=len(day), items=orjson.dumps(day))
        for day in by_day.values()
    ]


def unpack(items: bytes) -> list[Item]:
    unpacked: list[Item] = orjson.loads(items)
    return unpacked


def newest_fixes(
    chunks: Iterable[tuple[int, bytes]], start: int, end: int, limit: int, quality: QualityFilter = "good"
) -> list[HistoryPoint]:
    """The newest ``limit`` fixes with ``start <= recorded_at < end`` and of ``quality``, newest first (ties: later
    in the log first).

    ``chunks`` are ``(last_at, items)`` in descending ``last_at``: once ``limit`` fixes are held and a chunk's
    ``last_at`` is below the oldest of them, no later chunk can hold a newer one, so reading stops there.
    """
    held: list[tuple[int, int, int, Item]] = []  # min-heap on (recorded_at, partition, offset)
    if limit <= 0:
        return []
    for last_at, packed in chunks:
        if len(held) >= limit and last_at < held[0][0]:
            break
        for item in unpack(packed):
            if item[4] != FIX or not start <= item[0] < end or not wanted(quality, item[_QUALITY_AT]):
                continue
            entry = (item[0], item[2], item[3], item)
            if len(held) < limit:
                heapq.heappush(held, entry)
            elif entry[:3] > held[0][:3]:
                heapq.heapreplace(held, entry)
    newest = sorted(held, key=lambda entry: entry[:3], reverse=True)
    return [_point(item) for *_, item in newest]


def _point(item: Item) -> HistoryPoint:
    return HistoryPoint.of(str(UUID(hex=item[1])), from_micros(item[0]), item[_VALUES_AT:], item[_QUALITY_AT])
