"""The projection's storage contract, shared by the SQLite and PostgreSQL backends.

Four tables per *generation* (``rebuild`` fills a new generation, then switches to it in one transaction):

- ``technicians_g{n}``: the current state of each (tenant, technician);
- the history, every event applied, unique by ``(event_id, tenant_id)`` (and the de-duplication of retries; event
  ids come from clients, so one tenant's id never hides another tenant's event): ``events_g{n}`` on PostgreSQL, a
  row per event; ``history_g{n}`` on SQLite, a technician's events of a batch and a day packed in one row
  (``projector/history_chunks.py``);
- ``offsets_g{n}``: the next offset per partition, written in the same transaction as the rows it produced;
- ``crossings_g{n}``: every geofence crossing (``geofence_entered``/``geofence_exited``), unique by event id, from
  which a job's time on site is computed (``domain.visits``);
- ``stays_g{n}``: every stop, trip and offline period (``stop_*``, ``trip_*``, ``technician_offline``/``_online``),
  one row each, keyed by its technician, subject and start and holding its last event (a ``stay_retracted`` deletes
  it): what the reports list.

``projection_meta`` holds the current generation and the schema version (``SCHEMA_VERSION``): a store that finds
an older schema starts a fresh generation, which the projector fills by replaying the topic from its beginning.

Every batch runs in one transaction: drop the records below their partition's stored offset (applied already:
``beyond_stored``), insert the rest into the history (a known event id is skipped), apply the new events with the
pure rule, upsert the states and the offsets (never moving an offset backwards), commit.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, TypeVar

import msgspec

from domain.fix_quality import Anchor, QualityFilter, Spot
from domain.position import Position
from domain.projection import Fix, Key, Offline, Stamp, Stay, TechnicianState, apply, fix_verdict, take_fix
from domain.visits import Crossing
from schemas.events import (
    FIX_FIELD_NAMES,
    FIX_FIELDS,
    MARK_EVENTS,
    Crossed,
    Event,
    Fact,
    GeofenceEntered,
    GeofenceExited,
    LocationRecorded,
    Mark,
    QualityFlag,
    StayRetracted,
    StopEnded,
    StopStarted,
    TechnicianOffline,
    TechnicianOnline,
    TechnicianUpdated,
    TrackingStopped,
    fix_values,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

PROFILE_COLUMNS = (
    "tenant_id",
    "technician_id",
    "name",
    "name_at",
    "name_partition",
    "name_offset",
    "status",
    "status_at",
    "status_partition",
    "status_offset",
)
FIX_PLACE_COLUMNS = ("last_update", "fix_partition", "fix_offset")  # the fix's device time and place in the log
# What the derived facts say the technician is doing (``domain.projection.Stay`` and ``Offline``): the map's motion
# and presence, bootstrapped from here by the edge.
MARK_COLUMNS = ("stay_subject", "stay_started_at", "stay_ended_at", "offline_since", "offline_reason")
STATE_COLUMNS = (*PROFILE_COLUMNS, *FIX_FIELD_NAMES, *FIX_PLACE_COLUMNS, *MARK_COLUMNS)
# 2: event ids unique per tenant, SQLite ids as 16 bytes, times as integers; 3: fixes' quality; 4: stops and trips;
# 5: the technician's motion and presence in its row
SCHEMA_VERSION = 5


def schema_upgrade(found: int, generation: int, tables: Sequence[str]) -> tuple[int, list[str]]:
    """The generation to use, and the statements that drop the old one's tables, for a store whose meta says its
    tables have the layout ``found``: tables of an older layout are dropped and the projection starts over in a fresh
    generation, replayed from the topic (both backends, ``open()``)."""
    if found == SCHEMA_VERSION:
        return generation, []
    log.warning("projection schema %s found, %s expected: replaying the topic into new tables", found, SCHEMA_VERSION)
    return generation + 1, [f"DROP TABLE IF EXISTS {table}_g{int(generation)}" for table in tables]


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICROSECOND = timedelta(microseconds=1)
EVENT_COLUMNS = (
    "event_id",
    "tenant_id",
    "technician_id",
    "type",
    "recorded_at",
    "received_at",
    "partition",
    "offset_",
    *FIX_FIELD_NAMES,
    "name",
    "status",
)


def fix_column_definitions(types: dict[str, str]) -> str:
    """The fix's value columns of a table: ``types`` maps a field's kind (float, str) to the backend's type."""
    return ", ".join(f"{field.name} {types[field.kind]}" for field in FIX_FIELDS)


class GenerationChangedError(Exception):
    """A rebuild switched generations under a running projector: it must seek to the new offsets."""


class ConcurrentWriteError(Exception):
    """Another writer stored offsets of the batch's partitions meanwhile (a rebalance): seek to the stored ones."""


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
    """One recorded fix, as the seed's location-history endpoint lists it (a flat JSON object: its attributes are
    the response's fields, so they are spelled out; a test holds them to ``FIX_FIELD_NAMES``)."""

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
    quality: list[str]  # the fix's flags (domain/fix_quality.py): empty for a good fix

    @classmethod
    def of(cls, event_id: str, recorded_at: datetime, values: Iterable[Any], quality: Sequence[str]) -> HistoryPoint:
        """From the fix's values in ``FIX_FIELD_NAMES`` order; a row older than a field has None for it."""
        named = {name: None for name in FIX_FIELD_NAMES} | dict(zip(FIX_FIELD_NAMES, values, strict=False))
        return cls(event_id=event_id, recorded_at=recorded_at, quality=list(quality), **named)


Subject = Literal["stop", "trip", "offline"]  # the rows of ``stays_g{n}``


@dataclass(frozen=True, slots=True)
class StayQuery:
    """Which stops or trips a report lists: a tenant's (one technician's, with ``technician_id``) that started in
    [start, end), by start then technician, after the ``after`` one (the previous page's last), ``limit`` at most."""

    tenant_id: str
    subject: Subject
    start: datetime
    end: datetime
    limit: int
    technician_id: str | None = None
    after: tuple[datetime, str] | None = None


class ProjectionStore(Protocol):
    """What the projector, the rebuild, the edge's bootstrap and the history endpoint need of a backend."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def generation(self) -> int: ...
    async def stored_offsets(self, generation: int | None = None) -> dict[int, int]: ...
    async def apply_batch(
        self,
        events: Sequence[tuple[Event, Position]],
        next_offsets: dict[int, int],
        generation: int,
        derived: Sequence[tuple[Fact, Position]] = (),
    ) -> BatchResult: ...
    async def current(self, tenant_id: str, technician_id: str) -> TechnicianState | None: ...
    async def crossings(self, tenant_id: str, job_id: str) -> list[Crossing]: ...
    async def stays(self, query: StayQuery) -> list[StayRecord]: ...
    async def snapshot(self) -> Snapshot: ...
    async def history(
        self,
        tenant_id: str,
        technician_id: str,
        start: datetime | None,
        end: datetime | None,
        limit: int,
        quality: QualityFilter = "good",
    ) -> list[HistoryPoint] | None: ...
    async def prune_history(self, recorded_before: datetime) -> int: ...
    async def new_generation(self) -> int: ...
    async def switch_generation(self, generation: int) -> int: ...
    async def drop_generation(self, generation: int) -> None: ...


def to_micros(ts: datetime) -> int:
    """Microseconds since the Unix epoch, exact (SQLite stores times as integers, so they sort as times)."""
    return (ts - EPOCH) // ONE_MICROSECOND


def from_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def _same(value: Any) -> Any:
    return value


def _stamp_cols(stamp: Stamp | None, when: Callable[[datetime], Any]) -> tuple[Any, int | None, int | None]:
    if stamp is None:
        return None, None, None
    return when(stamp[0]), stamp[1].partition, stamp[1].offset


def _stamp(at: datetime | None, partition: int | None, offset: int | None) -> Stamp | None:
    if at is None or partition is None or offset is None:
        return None
    return at, Position(partition, offset)


def state_to_row(state: TechnicianState, when: Callable[[datetime], Any] = _same) -> tuple[Any, ...]:
    """Column values; ``when`` converts times to what the backend stores (datetimes by default)."""
    fix = state.fix
    fix_cols: tuple[Any, ...] = (
        (*fix_values(fix), when(fix.recorded_at), fix.position.partition, fix.position.offset)
        if fix is not None
        else (None,) * (len(FIX_FIELD_NAMES) + len(FIX_PLACE_COLUMNS))
    )
    stay, offline = state.stay, state.offline
    return (
        state.tenant_id,
        state.technician_id,
        state.name,
        *_stamp_cols(state.name_at, when),
        state.status,
        *_stamp_cols(state.status_at, when),
        *fix_cols,
        *(
            (stay.subject, when(stay.started_at), when(stay.ended_at) if stay.ended_at is not None else None)
            if stay is not None
            else (None, None, None)
        ),
        *((when(offline.last_seen_at), offline.reason) if offline is not None else (None, None)),
    )


def state_from_row(row: Sequence[Any], when: Callable[[Any], datetime] = _same) -> TechnicianState:
    """The inverse of ``state_to_row``; ``when`` turns a stored time back into a datetime."""
    named = dict(zip(STATE_COLUMNS, row, strict=True))
    fix = None
    if named["last_update"] is not None:
        fix = Fix(
            recorded_at=when(named["last_update"]),
            position=Position(named["fix_partition"], named["fix_offset"]),
            **{name: named[name] for name in FIX_FIELD_NAMES},
        )
    name_at, status_at = named["name_at"], named["status_at"]
    stay = None
    if named["stay_subject"] is not None:
        ended = named["stay_ended_at"]
        stay = Stay(named["stay_subject"], when(named["stay_started_at"]), when(ended) if ended is not None else None)
    offline = None
    if named["offline_since"] is not None:
        offline = Offline(when(named["offline_since"]), named["offline_reason"])
    return TechnicianState(
        tenant_id=named["tenant_id"],
        technician_id=named["technician_id"],
        name=named["name"],
        status=named["status"],
        name_at=_stamp(when(name_at) if name_at is not None else None, named["name_partition"], named["name_offset"]),
        status_at=_stamp(
            when(status_at) if status_at is not None else None, named["status_partition"], named["status_offset"]
        ),
        fix=fix,
        stay=stay,
        offline=offline,
    )


def event_to_row(event: Event, position: Position) -> tuple[Any, ...]:
    """History column values of one event (PostgreSQL keeps a row per event)."""
    common = (
        event.event_id,
        event.tenant_id,
        event.technician_id,
        event.type,
        event.recorded_at,
        event.received_at,
        position.partition,
        position.offset,
    )
    if isinstance(event, LocationRecorded):
        return (*common, *fix_values(event.data), None, None)
    assert isinstance(event, TechnicianUpdated)
    return (*common, *(None,) * len(FIX_FIELD_NAMES), event.data.name, event.data.status)


def beyond_stored(positioned: Iterable[tuple[T, Position]], stored: dict[int, int]) -> list[tuple[T, Position]]:
    """The records of a batch that its partitions' stored offsets do not already cover.

    A record below its partition's stored next offset was applied in the transaction that stored that offset.
    It can come again when a seek races a commit (a rebalance reads the offsets while a batch is being written);
    the history's event ids would not catch it once retention has pruned the event, so the offsets decide.
    """
    return [(item, position) for item, position in positioned if position.offset >= stored.get(position.partition, 0)]


def marks(derived: Iterable[tuple[Fact, Position]]) -> list[tuple[Mark, Position]]:
    """The derived events that mark a technician's state (``MARK_EVENTS``), in log order."""
    return [(event, position) for event, position in derived if isinstance(event, MARK_EVENTS)]


@dataclass(frozen=True)
class BatchPlan:
    changed: dict[Key, TechnicianState]  # the states the batch changed
    flags: dict[Position, tuple[QualityFlag, ...]]  # the batch's fixes that have a quality flag, by place in the log


def plan_batch(
    current: dict[Key, TechnicianState],
    fresh: Iterable[tuple[Event, Position]],
    marked: Iterable[tuple[Mark, Position]] = (),
) -> BatchPlan:
    """Judge the batch's new fixes and apply its new events (in log order) to the current states, then the derived
    facts' marks (``marked``: ``marks`` of the batch's derived events; ``domain.projection.mark``, whose result does
    not depend on where they stood beside the fixes).

    Each fix is judged beside its technician's last good fix as it stands when the fix comes (``fix_verdict``);
    of the good ones only the greatest ``(recorded_at, position)`` can win, so each technician's state is built once,
    from that one (``take_fix``): the same states and flags as applying every event in log order (a tested
    property), with one state change per technician and batch instead of one per fix. ``current`` is updated.
    """
    latest: dict[Key, tuple[LocationRecorded, Position, Spot]] = {}
    profiles: list[tuple[Event, Position]] = []
    flags: dict[Position, tuple[QualityFlag, ...]] = {}
    changed: dict[Key, TechnicianState] = {}
    for event, position in fresh:
        if not isinstance(event, LocationRecorded):
            profiles.append((event, position))
            continue
        key = (event.tenant_id, event.technician_id)
        held = latest.get(key)
        last: Anchor | None
        stamp: Stamp | None
        if held is not None:
            last, stamp = held[2], (held[2].recorded_at, held[1])
        else:
            state = current.get(key)
            fix = state.fix if state is not None else None
            last, stamp = fix, ((fix.recorded_at, fix.position) if fix is not None else None)
        if found := fix_verdict(event, last):
            flags[position] = found
            if key not in current:  # known from now on, with no position yet (as ``apply`` has it)
                current[key] = changed[key] = TechnicianState(tenant_id=key[0], technician_id=key[1])
        elif stamp is None or (event.recorded_at, position) > stamp:
            latest[key] = (event, position, Spot(event.data.latitude, event.data.longitude, event.recorded_at))
    for key, (event, position, _) in latest.items():
        known = current.get(key) or TechnicianState(tenant_id=key[0], technician_id=key[1])
        current[key] = changed[key] = take_fix(known, event, position)
    for event, position in (*profiles, *marked):  # name/status, position and marks are independent fields
        key = (event.tenant_id, event.technician_id)
        before = current.get(key)
        after = apply(before, event, position)
        if after is not before:
            current[key] = changed[key] = after
    return BatchPlan(changed, flags)


CROSSING_COLUMNS = (
    "event_id",
    "tenant_id",
    "technician_id",
    "geofence_id",
    "job_id",
    "entered",
    "at",
    "partition",
    "offset_",
)


STAY_COLUMNS = (
    "tenant_id",
    "technician_id",
    "subject",
    "started_at",
    "kind",
    "ended_at",
    "data",
    "event_id",
    "partition",
    "offset_",
)
STAY_KEY_COLUMNS = STAY_COLUMNS[:4]


@dataclass(frozen=True, slots=True)
class StayChange:
    """A stop or trip to store (``row``: ``STAY_COLUMNS``) or, ``row`` None, to delete (``key``); ``merge``: its data
    added to the stored row's (the end of an offline period keeps what its start said)."""

    key: tuple[Any, ...]
    row: tuple[Any, ...] | None
    merge: bool = False


@dataclass(frozen=True, slots=True)
class StayRecord:
    """A stop or trip as the reports list it: its last event's type and data."""

    technician_id: str
    subject: Subject
    kind: str
    started_at: datetime
    ended_at: datetime | None
    data: dict[str, Any]


def split_derived(
    derived: Iterable[tuple[Fact, Position]],
    when: Callable[[datetime], Any] = _same,
    ids: Callable[[uuid.UUID], Any] = _same,
) -> tuple[list[tuple[Any, ...]], list[StayChange]]:
    """A batch's derived events as crossing rows (``CROSSING_COLUMNS``) and stay changes, in log order; ``when`` and
    ``ids`` turn times and event ids into the backend's values."""
    crossings: list[tuple[Any, ...]] = []
    stays: list[StayChange] = []
    for event, position in derived:
        if isinstance(event, GeofenceEntered | GeofenceExited):
            crossings.append((ids(event.event_id), *crossing_to_row(event, position, when)[1:]))
        elif isinstance(event, TrackingStopped):
            continue  # a mark only: the offline period it begins is the processor's row (docs/online-offline.md)
        elif isinstance(event, StayRetracted):
            retracted = (event.tenant_id, event.technician_id, event.data.subject, when(event.data.started_at))
            stays.append(StayChange(retracted, None))
        else:
            data = event.data
            if isinstance(event, TechnicianOffline):  # an offline period, known by the last fix before it
                subject, started, end = "offline", event.data.last_seen_at, None
            elif isinstance(event, TechnicianOnline):
                subject, started, end = "offline", event.data.last_seen_at, event.data.back_at
            else:
                subject = "stop" if isinstance(event, StopStarted | StopEnded) else "trip"
                started, end = event.data.started_at, event.data.ended_at
            key = (event.tenant_id, event.technician_id, subject, when(started))
            ended = when(end) if end is not None else None
            encoded = msgspec.json.encode(data).decode()
            row = (*key, event.type, ended, encoded, ids(event.event_id), position.partition, position.offset)
            stays.append(StayChange(key, row, merge=isinstance(event, TechnicianOnline)))
    return crossings, stays


def stay_record(
    technician_id: str, subject: str, kind: str, started_at: datetime, ended_at: datetime | None, data: str
) -> StayRecord:
    known: dict[str, Subject] = {"stop": "stop", "trip": "trip", "offline": "offline"}
    return StayRecord(
        technician_id,
        known[subject],
        kind,
        started_at,
        ended_at,
        msgspec.json.decode(data),
    )


def crossing_to_row(event: Crossed, position: Position, when: Callable[[datetime], Any] = _same) -> tuple[Any, ...]:
    return (
        event.event_id,
        event.tenant_id,
        event.technician_id,
        event.data.geofence_id,
        event.data.job_id,
        isinstance(event, GeofenceEntered),
        when(event.recorded_at),
        position.partition,
        position.offset,
    )
