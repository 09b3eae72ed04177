"""What the location log derives, record by record, pure: the derived-facts processor's rules in the order it applies
them, and the events they make (``geofencer/processor.py`` reads the log, appends the events and commits the state
around this; docs/scale-out.md). Compiled with the other per-fix rules (``domain.COMPILED_MODULES``): the loop over a
batch's records is the processor's hottest code, and run interpreted its glue cost about as much as the rules.

For each record of a batch (``Evaluation.records``), decoded: a fix the quality rule lets through
(``domain.projection.fix_verdict``; a flagged fix is passed over as the projector passes it over) is

- evaluated against its tenant's fences (``domain.geofencing.fix_crossings``): enter and exit crossings;
- added to its technician's stops-and-trips track (``domain.stays.StayTrack``, with its tenant's thresholds):
  ``stop_*``, ``trip_*`` and, when a late fix revises what was said, ``stay_retracted``;
- heard from its technician (``domain.presence``): ``technician_online`` when it was offline;

an app's ``tracking_stopped`` says its technician offline at once; the processor's own ``technician_offline``, read
back, has the last word on its technician's presence. Every event goes to the partition of the record that caused it
(``Outbox``), so it stays in order with the fixes around it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from domain.geofencing import Crossing, FenceBook, FenceIndex, TechnicianFences, fix_crossings
from domain.identity import uuid5
from domain.presence import PartitionClock, Presence, Presences
from domain.stays import Change, Retraction, StayTrack, TailAdditions, new_point
from schemas.events import (
    CrossingData,
    Derived,
    GeofenceEntered,
    GeofenceExited,
    InvalidEventError,
    LocationRecorded,
    OfflineData,
    OfflineReason,
    OnlineData,
    RetractionData,
    Stayed,
    StayRetracted,
    StopData,
    StopEnded,
    StopStarted,
    TechnicianOffline,
    TechnicianOnline,
    TrackingStopped,
    TripData,
    TripEnded,
    TripStarted,
    decode_event,
    encode_event,
)
from schemas.tenant_rules import StayRules

Key = tuple[str, str]  # (tenant, technician)
KeyValue = tuple[bytes | None, bytes | None]  # a record's key and value
TenantLimits = tuple[StayRules, float, float]  # a tenant's stops-and-trips rules, max speed (km/h), offline after (s)

_STAY_NAMESPACE: Final = uuid.UUID("0d9a3f57-2f44-4c8e-b3a1-8e5f0c2d7b11").bytes
_PRESENCE_NAMESPACE: Final = uuid.UUID("5b0e2f1a-7c1d-4e8b-9f3a-2d6c8e4a1b07").bytes
STAY_TYPES: Final = ("stop_started", "stop_ended", "trip_started", "trip_ended", "stay_retracted")


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def job_site(index: FenceIndex | None, latitude: float, longitude: float) -> tuple[str, str | None] | None:
    """The fence (by id, the first) that holds a stop's place, and its job."""
    if index is None:
        return None
    for geofence_id in sorted(index.near(latitude, longitude)):
        fence = index.fences[geofence_id]
        if fence.contains(latitude, longitude):
            return fence.geofence_id, fence.job_id
    return None


def stay_event(fix: LocationRecorded, change: Change, index: FenceIndex | None) -> Stayed:
    """The event of one change of a track, made known by ``fix``: its id is derived from the fix, the kind and the
    stop's or trip's start, so a repeated batch repeats it (and a stop retracted and later found again is a new
    event)."""
    kind = "retracted" if isinstance(change, Retraction) else change.kind
    event_id = uuid5(_STAY_NAMESPACE, f"{fix.event_id}/{kind}/{change.started_at!r}")
    envelope: dict[str, Any] = {
        "event_id": event_id,
        "tenant_id": fix.tenant_id,
        "technician_id": fix.technician_id,
        "recorded_at": fix.recorded_at,
        "received_at": fix.received_at,
    }
    if isinstance(change, Retraction):
        return StayRetracted(**envelope, data=RetractionData(subject=change.subject, started_at=_at(change.started_at)))
    started = _at(change.started_at)
    ended = _at(change.ended_at) if change.ended_at is not None else None
    duration = round((change.ended_at if change.ended_at is not None else change.known_at) - change.started_at, 3)
    if change.subject == "stop":
        site = job_site(index, change.latitude, change.longitude)
        stop = StopData(
            started_at=started,
            ended_at=ended,
            latitude=change.latitude,
            longitude=change.longitude,
            duration_seconds=duration,
            fixes=change.fixes,
            geofence_id=site[0] if site else None,
            job_id=site[1] if site else None,
        )
        if change.kind == "stop_started":
            return StopStarted(**envelope, data=stop)
        return StopEnded(**envelope, data=stop)
    trip = TripData(
        started_at=started,
        ended_at=ended,
        start_latitude=change.latitude,
        start_longitude=change.longitude,
        end_latitude=change.end_latitude,
        end_longitude=change.end_longitude,
        duration_seconds=duration,
        distance_meters=round(change.distance_m, 1),
        fixes=change.fixes,
    )
    if change.kind == "trip_started":
        return TripStarted(**envelope, data=trip)
    return TripEnded(**envelope, data=trip)


def offline_event(
    key: Key, presence: Presence, silent_seconds: float, now: float, reason: OfflineReason = "silent"
) -> TechnicianOffline:
    """Known by the technician's last good fix: one offline event per silence (or stop its app said), the same one if a
    repeat says it."""
    last_seen = _at(presence.last_seen)
    return TechnicianOffline(
        event_id=uuid5(_PRESENCE_NAMESPACE, f"offline/{key[0]}/{key[1]}/{presence.fix_id}"),
        tenant_id=key[0],
        technician_id=key[1],
        recorded_at=last_seen,
        received_at=_at(now),
        data=OfflineData(
            last_seen_at=last_seen, silent_seconds=round(silent_seconds, 3), fix_event_id=presence.fix_id, reason=reason
        ),
    )


def online_event(fix: LocationRecorded, was: Presence) -> TechnicianOnline:
    """The good fix that ended the offline period ``was``; known by that fix."""
    return TechnicianOnline(
        event_id=uuid5(_PRESENCE_NAMESPACE, f"online/{fix.event_id}"),
        tenant_id=fix.tenant_id,
        technician_id=fix.technician_id,
        recorded_at=fix.recorded_at,
        received_at=fix.received_at,
        data=OnlineData(last_seen_at=_at(was.last_seen), back_at=fix.recorded_at, fix_event_id=fix.event_id),
    )


def online_event_of(offline: TechnicianOffline, ended: Presence) -> TechnicianOnline:
    """The end of the silence ``offline`` says, by the fix ``ended`` holds (read before the offline event, after a
    crash lost it): the same id as the online event the fix made when read after it."""
    back_at = _at(ended.last_seen)
    return TechnicianOnline(
        event_id=uuid5(_PRESENCE_NAMESPACE, f"online/{ended.fix_id}"),
        tenant_id=offline.tenant_id,
        technician_id=offline.technician_id,
        recorded_at=back_at,
        received_at=offline.received_at,
        data=OnlineData(last_seen_at=offline.data.last_seen_at, back_at=back_at, fix_event_id=ended.fix_id),
    )


def crossing_event(fix: LocationRecorded, crossing: Crossing) -> GeofenceEntered | GeofenceExited:
    data = CrossingData(
        geofence_id=crossing.fence.geofence_id,
        job_id=crossing.fence.job_id,
        geofence_name=crossing.fence.name,
        distance_meters=round(crossing.distance_m, 2),
        fix_event_id=fix.event_id,
    )
    kind: type[GeofenceEntered] | type[GeofenceExited] = GeofenceEntered if crossing.kind == "enter" else GeofenceExited
    return kind(
        event_id=crossing.event_id,
        tenant_id=fix.tenant_id,
        technician_id=fix.technician_id,
        recorded_at=fix.recorded_at,
        received_at=fix.received_at,
        data=data,
    )


class Outbox:
    """Derived events in order per partition (the tenant's, so each stays in order with the fixes around it), encoded
    as records keyed by their tenant, and how many of each type; the processor hands them to its producer in record
    batches once a batch is evaluated."""

    def __init__(self) -> None:
        self.by_partition: dict[int, list[KeyValue]] = {}
        self.counts: dict[str, int] = {}

    def add(self, event: Derived, partition: int) -> None:
        held = self.by_partition.get(partition)
        if held is None:
            held = self.by_partition[partition] = []
        held.append((event.tenant_id.encode(), encode_event(event)))
        self.counts[event.type] = self.counts.get(event.type, 0) + 1


class Evaluation:
    """One batch of the location log evaluated against the processor's state (changed in place): ``records`` of one
    partition at a time, in log order. What it derived is in ``outbox``; what it changed is for the processor to
    commit: the technicians whose fences' state or presence changed (``changed``, ``heard_from``), each track's new
    fixes and the partition they came from (``tail``) and the tracks whose tail was cut
    (``cut``)."""

    def __init__(
        self,
        technicians: dict[Key, TechnicianFences],
        tracks: dict[Key, StayTrack],
        clocks: dict[int, PartitionClock],
        presences: Presences,
        book: FenceBook,
        limits_of: Callable[[str], TenantLimits],
        horizon_seconds: float,
        max_fixes: int,
        now: float,
    ) -> None:
        self.technicians = technicians
        self.tracks = tracks
        self.clocks = clocks
        self.presences = presences
        self.book = book
        self.limits_of = limits_of
        self.horizon_seconds = horizon_seconds
        self.max_fixes = max_fixes
        self.now = now  # the wall time the processor says an app's stop at (its offline event's ``received_at``)
        self.outbox = Outbox()
        self.changed: dict[Key, TechnicianFences] = {}
        self.heard_from: set[Key] = set()  # technicians whose presence its own offline events changed
        self.tail = TailAdditions()
        self.cut: list[Key] = []
        self.fixes = 0
        self.too_late = 0  # good fixes older than their track's horizon: in the history, not in stops and trips
        self._limits: dict[str, TenantLimits] = {}  # looked up once a batch per tenant

    def records(self, partition: int, values: Sequence[bytes]) -> None:
        """Records of ``partition`` (their values), in log order; one that is no event is passed over (the
        projector dead-letters it)."""
        for value in values:
            try:
                event = decode_event(value)
            except InvalidEventError:
                continue
            if isinstance(event, LocationRecorded):
                self._fix(event, partition)
            elif isinstance(event, TechnicianOffline):
                self._offline_read_back(event, partition)
            elif isinstance(event, TrackingStopped):
                self._tracking_stopped(event, partition)

    def _clock(self, partition: int) -> PartitionClock:
        clock = self.clocks.get(partition)
        if clock is None:
            clock = self.clocks[partition] = PartitionClock()
        return clock

    def _offline_read_back(self, event: TechnicianOffline, partition: int) -> None:
        """The processor's own offline event, read back: the log has the last word."""
        key = (event.tenant_id, event.technician_id)
        ended = self.presences.said_offline(key, event.data.fix_event_id)
        if key in self.presences.by_key:
            self.heard_from.add(key)
        if ended is not None:  # a fix ended that silence before this processor read it: say so
            self.outbox.add(online_event_of(event, ended), partition)

    def _tracking_stopped(self, event: TrackingStopped, partition: int) -> None:
        """The app said so: offline at once (docs/online-offline.md)."""
        key = (event.tenant_id, event.technician_id)
        clock = self._clock(partition)
        clock.advance(event.received_at.timestamp())
        stopped = self.presences.stopped(key, event.recorded_at.timestamp())
        if stopped is not None:
            silent = clock.watched - stopped.heard_at
            self.outbox.add(offline_event(key, stopped, silent, self.now, reason="tracking_stopped"), partition)
            self.heard_from.add(key)  # its presence is written with the batch

    def _fix(self, event: LocationRecorded, partition: int) -> None:
        self.fixes += 1
        tenant = event.tenant_id
        key = (tenant, event.technician_id)
        state = self.technicians.get(key)
        if state is None:
            state = self.technicians[key] = TechnicianFences()
        index = self.book.index(tenant)
        crossings = fix_crossings(state, index, event)
        if crossings is None:
            return  # a flagged fix triggers nothing and moves nothing (domain/fix_quality.py)
        outbox = self.outbox
        for crossing in crossings:
            outbox.add(crossing_event(event, crossing), partition)
        self.changed[key] = state
        limits = self._limits.get(tenant)
        if limits is None:
            limits = self._limits[tenant] = self.limits_of(tenant)
        clock = self._clock(partition)
        clock.advance(event.received_at.timestamp())
        at = event.recorded_at.timestamp()
        back = self.presences.heard(key, partition, clock.watched, at, event.event_id, limits[2])
        if back is not None:
            outbox.add(online_event(event, back), partition)
        track = self.tracks.get(key)
        if track is None:
            track = self.tracks[key] = StayTrack()
        data = event.data
        point = new_point(at, data.latitude, data.longitude)
        stays = track.add(point, limits[0], limits[1])
        if stays is None:
            self.too_late += 1
            return
        self.tail.add(key, point, partition)
        for change in stays:
            outbox.add(stay_event(event, change, index), partition)
        tail = track.tail
        horizon, max_fixes = self.horizon_seconds, self.max_fixes
        if tail[-1].at - tail[0].at > 1.5 * horizon or len(tail) > 1.5 * max_fixes:
            if track.prune(horizon, max_fixes):
                self.cut.append(key)
