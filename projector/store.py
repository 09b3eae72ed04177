"""The projection's storage contract, shared by the SQLite and PostgreSQL backends.

Three tables per *generation* (``rebuild`` fills a new generation, then switches to it in one transaction):

- ``technicians_g{n}``: the current state of each (tenant, technician);
- ``events_g{n}``: every event applied, keyed by ``event_id`` (the history, and the de-duplication of retries);
- ``offsets_g{n}``: the next offset per partition, written in the same transaction as the rows it produced.

``projection_meta`` holds the current generation. Every batch runs in one transaction: insert the batch into the
history (a known ``event_id`` is skipped), apply the new events with the pure rule, upsert the states and the
offsets (never moving an offset backwards), commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from projector.apply import Fix, Key, Position, Stamp, TechnicianState, apply
from schemas.events import Event, LocationRecorded, TechnicianUpdated

STATE_COLUMNS = (
    "tenant_id", "technician_id", "name", "name_at", "name_partition", "name_offset",
    "status", "status_at", "status_partition", "status_offset",
    "latitude", "longitude", "accuracy_meters", "altitude", "speed_kmh", "heading", "activity", "job_id",
    "last_update", "fix_partition", "fix_offset",
)  # fmt: skip
EVENT_COLUMNS = (
    "event_id", "tenant_id", "technician_id", "type", "recorded_at", "received_at", "partition", "offset_",
    "latitude", "longitude", "accuracy_meters", "altitude", "speed_kmh", "heading", "activity", "job_id",
    "name", "status",
)  # fmt: skip


class GenerationChangedError(Exception):
    """A rebuild switched generations under a running projector: it must seek to the new offsets."""


@dataclass(frozen=True)
class Snapshot:
    """The table and the offsets it reflects, read in one transaction."""

    states: list[TechnicianState]
    offsets: dict[int, int]  # partition -> next offset to read
    generation: int = 1


@dataclass(frozen=True)
class BatchResult:
    applied: int  # events new to the history, applied to the states
    duplicates: int  # events whose event_id was already known
    changed: int  # technician rows written


@dataclass(frozen=True)
class HistoryPoint:
    """One recorded fix, as the seed's location-history endpoint lists it."""

    event_id: str
    latitude: float
    longitude: float
    accuracy_meters: float | None
    altitude: float | None
    speed_kmh: float | None
    heading: float | None
    activity: str | None
    job_id: str | None
    recorded_at: datetime


class ProjectionStore(Protocol):
    """What the projector, the rebuild, the edge's bootstrap and the history endpoint need of a backend."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def generation(self) -> int: ...
    async def stored_offsets(self, generation: int | None = None) -> dict[int, int]: ...
    async def apply_batch(
        self, events: Sequence[tuple[Event, Position]], next_offsets: dict[int, int], generation: int
    ) -> BatchResult: ...
    async def snapshot(self) -> Snapshot: ...
    async def history(
        self, tenant_id: str, technician_id: str, start: datetime | None, end: datetime | None, limit: int
    ) -> list[HistoryPoint] | None: ...
    async def prune_history(self, received_before: datetime) -> int: ...
    async def new_generation(self) -> int: ...
    async def switch_generation(self, generation: int) -> int: ...
    async def drop_generation(self, generation: int) -> None: ...


def utc_text(ts: datetime) -> str:
    """A fixed-width UTC ISO form, so text comparison is time comparison (SQLite stores times as text)."""
    return ts.astimezone(UTC).isoformat(timespec="microseconds")


def _stamp_cols(stamp: Stamp | None) -> tuple[datetime | None, int | None, int | None]:
    if stamp is None:
        return None, None, None
    return stamp[0], stamp[1].partition, stamp[1].offset


def _stamp(at: datetime | None, partition: int | None, offset: int | None) -> Stamp | None:
    if at is None or partition is None or offset is None:
        return None
    return at, Position(partition, offset)


def state_to_row(state: TechnicianState) -> tuple[Any, ...]:
    """Column values (datetimes as datetimes; a backend converts them as it stores them)."""
    fix = state.fix
    fix_cols: tuple[Any, ...] = (
        (fix.latitude, fix.longitude, fix.accuracy_meters, fix.altitude, fix.speed_kmh, fix.heading,
         fix.activity, fix.job_id, fix.recorded_at, fix.position.partition, fix.position.offset)
        if fix is not None
        else (None,) * 11
    )  # fmt: skip
    return (
        state.tenant_id, state.technician_id, state.name, *_stamp_cols(state.name_at),
        state.status, *_stamp_cols(state.status_at), *fix_cols,
    )  # fmt: skip


def state_from_row(row: Sequence[Any]) -> TechnicianState:
    """The inverse of ``state_to_row``; times may come back as datetimes or as ISO text."""
    (tenant_id, technician_id, name, name_at, name_p, name_o, status, status_at, status_p, status_o,
     lat, lon, acc, alt, speed, heading, activity, job_id, last_update, fix_p, fix_o) = row  # fmt: skip
    fix = None
    if last_update is not None:
        fix = Fix(
            latitude=lat,
            longitude=lon,
            recorded_at=as_datetime(last_update),
            position=Position(fix_p, fix_o),
            accuracy_meters=acc,
            altitude=alt,
            speed_kmh=speed,
            heading=heading,
            activity=activity,
            job_id=job_id,
        )
    return TechnicianState(
        tenant_id=tenant_id, technician_id=technician_id, name=name, status=status,
        name_at=_stamp(as_datetime(name_at) if name_at else None, name_p, name_o),
        status_at=_stamp(as_datetime(status_at) if status_at else None, status_p, status_o),
        fix=fix,
    )  # fmt: skip


def as_datetime(value: datetime | str) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def event_to_row(event: Event, position: Position) -> tuple[Any, ...]:
    common = (
        str(event.event_id), event.tenant_id, event.technician_id, event.type, event.recorded_at,
        event.received_at, position.partition, position.offset,
    )  # fmt: skip
    if isinstance(event, LocationRecorded):
        d = event.data
        return (*common, d.latitude, d.longitude, d.accuracy_meters, d.altitude, d.speed_kmh, d.heading,
                d.activity, d.job_id, None, None)  # fmt: skip
    assert isinstance(event, TechnicianUpdated)
    return (*common, *(None,) * 8, event.data.name, event.data.status)


def plan_batch(
    current: dict[Key, TechnicianState], fresh: Iterable[tuple[Event, Position]]
) -> dict[Key, TechnicianState]:
    """Apply the batch's new events (in log order) to the current states; returns the states that changed."""
    changed: dict[Key, TechnicianState] = {}
    for event, position in fresh:
        key = (event.tenant_id, event.technician_id)
        before = current.get(key)
        after = apply(before, event, position)
        if after is not before:
            current[key] = changed[key] = after
    return changed
