"""The Kafka event envelope on topic ``locations.v1`` (key = tenant_id, value = JSON).

Every event carries the same envelope fields; ``data`` holds what is specific to its ``type``.
Events are frozen: an event is a fact, never edited after it was appended.

Events are ``msgspec`` structs, not pydantic models: every consumer (projector, edge, replay) decodes every record,
and on our 2-core machines msgspec decodes and validates an event in ~3 µs where pydantic took 5 µs alone and
20 µs inside a projector batch, because its models are tracked by the garbage collector and ours are not
(``gc=False``: events hold only strings, numbers, datetimes and UUIDs, never a cycle). The HTTP bodies stay
pydantic (FastAPI builds the OpenAPI document from them) and take their bounds from ``LIMITS`` below, so the API
and the topic accept the same values.
"""

from __future__ import annotations

import operator
import uuid
from datetime import datetime
from typing import Annotated, Any, ClassVar, Final, Literal, NamedTuple

import msgspec
import msgspec.inspect
from msgspec import Meta, Struct

SCHEMA_VERSION: Final = 1

# Bounds of every constrained field, shared with the HTTP bodies (producers/models.py). Numbers are strict (no
# "12.5" strings, no booleans) and finite (JSON has no NaN; 1e999 is out of every range).
LIMITS: Final[dict[str, dict[str, Any]]] = {
    "latitude": {"ge": -90, "le": 90},
    "longitude": {"ge": -180, "le": 180},
    "accuracy_meters": {"ge": 0, "le": 100_000},
    "altitude": {"ge": -1_000, "le": 20_000},
    "speed_kmh": {"ge": 0, "le": 1_500},
    "heading": {"ge": 0, "lt": 360},
    "activity": {"max_length": 256},
    "job_id": {"max_length": 256},
    "name": {"min_length": 1, "max_length": 200},
    "status": {"min_length": 1, "max_length": 64},
    "identifier": {"min_length": 1, "max_length": 128},  # tenant and technician ids
}
MAX_METADATA_BYTES: Final = 4096  # a fix's free-form ``metadata``, as compact JSON

# What can be wrong with a fix (``domain/fix_quality.py``), in the order they are listed; and a tenant's limits when it
# set none (``schemas/tenant_rules.py``).
QualityFlag = Literal["zero", "accuracy", "mock", "duplicate", "jump"]
QUALITY_FLAGS: Final[tuple[QualityFlag, ...]] = ("zero", "accuracy", "mock", "duplicate", "jump")
DEFAULT_MAX_ACCURACY_METERS: Final = 100.0
DEFAULT_MAX_SPEED_KMH: Final = 200.0

Identifier = Annotated[str, Meta(**LIMITS["identifier"])]
AwareDatetime = Annotated[datetime, Meta(tz=True)]  # device or server time; must carry its offset


class FixQuality(Struct, frozen=True, forbid_unknown_fields=True, gc=False, kw_only=True, omit_defaults=True):
    """The ingest API's verdict on a fix by itself (``domain.fix_quality.ingest_flags``), and the tenant's jump limit
    in force when it was received, by which every reader of the log judges the fix beside the technician's last good
    one. Written by the API only: no request body has the field."""

    flags: tuple[QualityFlag, ...] = ()
    max_speed_kmh: Annotated[float, Meta(gt=0, le=LIMITS["speed_kmh"]["le"])] = DEFAULT_MAX_SPEED_KMH


class LocationData(Struct, frozen=True, forbid_unknown_fields=True, gc=False, kw_only=True):
    """A position fix as the seed's ``POST .../location`` body carries it."""

    latitude: Annotated[float, Meta(**LIMITS["latitude"])]
    longitude: Annotated[float, Meta(**LIMITS["longitude"])]
    accuracy_meters: Annotated[float, Meta(**LIMITS["accuracy_meters"])] | None = None
    altitude: Annotated[float, Meta(**LIMITS["altitude"])] | None = None
    speed_kmh: Annotated[float, Meta(**LIMITS["speed_kmh"])] | None = None
    heading: Annotated[float, Meta(**LIMITS["heading"])] | None = None
    activity: Annotated[str, Meta(**LIMITS["activity"])] | None = None
    job_id: Annotated[str, Meta(**LIMITS["job_id"])] | None = None
    backfill: bool = False  # sent late from a device's buffer: history, but maps do not animate it
    metadata: dict[str, Any] | None = None  # the client's own fields, at most MAX_METADATA_BYTES
    quality: FixQuality | None = None  # None: appended before fixes were judged, and taken as it was then


class FixField(NamedTuple):
    name: str
    kind: Literal["float", "str"]


def _fix_fields() -> tuple[FixField, ...]:
    """The values a fix records, as ``LocationData`` declares them (its numbers and texts, in order)."""
    fields = []
    for field in msgspec.inspect.type_info(LocationData).fields:  # type: ignore[attr-defined]
        kinds = field.type.types if isinstance(field.type, msgspec.inspect.UnionType) else (field.type,)
        for kind in kinds:
            if isinstance(kind, msgspec.inspect.FloatType):
                fields.append(FixField(field.name, "float"))
            elif isinstance(kind, msgspec.inspect.StrType):
                fields.append(FixField(field.name, "str"))
    return tuple(fields)


# The one list of a fix's recorded values: the projection's tables and rows, the history's chunks and points, and
# the exports' columns all derive from it (``backfill``, ``metadata`` and ``quality`` are about the fix, not its
# values). A field added to ``LocationData`` is a new column of the projection's tables: raise
# ``projector.store.SCHEMA_VERSION``.
FIX_FIELDS: Final = _fix_fields()
FIX_FIELD_NAMES: Final = tuple(field.name for field in FIX_FIELDS)
_FIX_VALUES: Final = operator.attrgetter(*FIX_FIELD_NAMES)


def fix_values(fix: object) -> tuple[Any, ...]:
    """A fix's values in ``FIX_FIELD_NAMES`` order, from anything that holds them by name (``LocationData``, the
    projection's ``Fix``, a request body)."""
    values: tuple[Any, ...] = _FIX_VALUES(fix)
    return values


def fix_fields_of(fix: object) -> dict[str, Any]:
    """A fix's values by name, to make another kind of fix of them (``Fix(**fix_fields_of(data), ...)``)."""
    return dict(zip(FIX_FIELD_NAMES, _FIX_VALUES(fix), strict=True))


class TechnicianData(Struct, frozen=True, forbid_unknown_fields=True, gc=False, kw_only=True):
    """Name and status of a technician; a field left out stays as it was."""

    name: Annotated[str, Meta(**LIMITS["name"])] | None = None
    status: Annotated[str, Meta(**LIMITS["status"])] | None = None


class _Envelope(Struct, frozen=True, forbid_unknown_fields=True, gc=False, kw_only=True, tag_field="type"):
    event_id: uuid.UUID
    schema_version: Literal[1] = 1
    tenant_id: Identifier
    technician_id: Identifier
    recorded_at: AwareDatetime  # device time
    received_at: AwareDatetime  # server time


class LocationRecorded(_Envelope, frozen=True, gc=False, tag="location_recorded"):
    type: ClassVar[str] = "location_recorded"
    data: LocationData


class TechnicianUpdated(_Envelope, frozen=True, gc=False, tag="technician_updated"):
    type: ClassVar[str] = "technician_updated"
    data: TechnicianData


class CrossingData(Struct, frozen=True, forbid_unknown_fields=True, gc=False, kw_only=True):
    """A technician crossing a fence's edge, as the geofence processor saw it in one fix (``geofencer/``)."""

    geofence_id: Identifier
    job_id: Annotated[str, Meta(**LIMITS["job_id"])] | None = None
    geofence_name: Annotated[str, Meta(max_length=200)] | None = None
    distance_meters: Annotated[float, Meta(ge=0)]  # from the fence's centre
    fix_event_id: uuid.UUID  # the fix that crossed


class GeofenceEntered(_Envelope, frozen=True, gc=False, tag="geofence_entered"):
    """``recorded_at`` and ``received_at`` are the crossing fix's; ``event_id`` is derived from it and the fence,
    so a processor repeating a batch after a crash repeats the same event (deduplicated by id)."""

    type: ClassVar[str] = "geofence_entered"
    data: CrossingData


class GeofenceExited(_Envelope, frozen=True, gc=False, tag="geofence_exited"):
    type: ClassVar[str] = "geofence_exited"
    data: CrossingData


Latitude = Annotated[float, Meta(**LIMITS["latitude"])]
Longitude = Annotated[float, Meta(**LIMITS["longitude"])]


class StopData(Struct, frozen=True, forbid_unknown_fields=True, gc=False, kw_only=True):
    """A stop (``domain/stays.py``): from its first fix to its last (``ended_at``: None while it lasts), at the mean
    of its fixes; the job site whose fence holds that place, if any."""

    started_at: AwareDatetime
    ended_at: AwareDatetime | None = None
    latitude: Latitude
    longitude: Longitude
    duration_seconds: Annotated[float, Meta(ge=0)]  # so far, for a stop that lasts
    fixes: Annotated[int, Meta(ge=1)]
    geofence_id: Identifier | None = None
    job_id: Annotated[str, Meta(**LIMITS["job_id"])] | None = None


class TripData(Struct, frozen=True, forbid_unknown_fields=True, gc=False, kw_only=True):
    """A trip from one stop's last fix to the next stop's first (``ended_at`` and the end: None while it lasts)."""

    started_at: AwareDatetime
    ended_at: AwareDatetime | None = None
    start_latitude: Latitude
    start_longitude: Longitude
    end_latitude: Latitude | None = None
    end_longitude: Longitude | None = None
    duration_seconds: Annotated[float, Meta(ge=0)]
    distance_meters: Annotated[float, Meta(ge=0)]  # along the fixes
    fixes: Annotated[int, Meta(ge=0)]


class RetractionData(Struct, frozen=True, forbid_unknown_fields=True, gc=False, kw_only=True):
    subject: Literal["stop", "trip"]
    started_at: AwareDatetime


class StopStarted(_Envelope, frozen=True, gc=False, tag="stop_started"):
    """The stays events (``stop_*``, ``trip_*``, ``stay_retracted``) come from the derived-facts processor
    (``geofencer/``). ``recorded_at`` is the device time of the fix at which it knew; ``event_id`` is derived from
    the fix that made it known, so a repeated batch repeats the same event. A stop or trip is known by its
    technician and ``data.started_at``: its last event is what it is now."""

    type: ClassVar[str] = "stop_started"
    data: StopData


class StopEnded(_Envelope, frozen=True, gc=False, tag="stop_ended"):
    type: ClassVar[str] = "stop_ended"
    data: StopData


class TripStarted(_Envelope, frozen=True, gc=False, tag="trip_started"):
    type: ClassVar[str] = "trip_started"
    data: TripData


class TripEnded(_Envelope, frozen=True, gc=False, tag="trip_ended"):
    type: ClassVar[str] = "trip_ended"
    data: TripData


class StayRetracted(_Envelope, frozen=True, gc=False, tag="stay_retracted"):
    """A late fix showed that the stop or trip that started at ``data.started_at`` never was."""

    type: ClassVar[str] = "stay_retracted"
    data: RetractionData


OfflineReason = Literal["silent", "tracking_stopped"]


class OfflineData(Struct, frozen=True, forbid_unknown_fields=True, gc=False, kw_only=True):
    """A technician not heard from (no good fix) for ``silent_seconds`` of the processor's watched time
    (``reason: silent``), or whose app said it stopped tracking (``tracking_stopped``, at once)."""

    last_seen_at: AwareDatetime  # its newest good fix's device time: what the offline period is known by
    silent_seconds: Annotated[float, Meta(ge=0)]
    fix_event_id: uuid.UUID  # that fix
    reason: OfflineReason = "silent"


class OnlineData(Struct, frozen=True, forbid_unknown_fields=True, gc=False, kw_only=True):
    last_seen_at: AwareDatetime  # the offline period's: the newest good fix before it
    back_at: AwareDatetime  # the device time of the good fix that ended it
    fix_event_id: uuid.UUID  # that fix


class TechnicianOffline(_Envelope, frozen=True, gc=False, tag="technician_offline"):
    """From the derived-facts processor (``domain/presence.py``). ``recorded_at`` is ``data.last_seen_at``;
    ``received_at`` when the processor said it. The id is derived from the last fix, so a repeat is the same event."""

    type: ClassVar[str] = "technician_offline"
    data: OfflineData


class TechnicianOnline(_Envelope, frozen=True, gc=False, tag="technician_online"):
    """The good fix that ended an offline period; its id is derived from that fix."""

    type: ClassVar[str] = "technician_online"
    data: OnlineData


class TrackingStoppedData(Struct, frozen=True, forbid_unknown_fields=True, gc=False, kw_only=True):
    """What the app said (docs/devices.md): ``paused`` (iOS paused its location updates: Overland's
    ``paused_location_updates``), ``terminated`` (the app was closed: Overland's ``will_terminate``), ``last_will``
    (the app vanished and its MQTT broker published its last will: OwnTracks' ``lwt``, forwarded over HTTP)."""

    reason: Literal["paused", "terminated", "last_will"]
    app: Literal["overland", "owntracks"]


class TrackingStopped(_Envelope, frozen=True, gc=False, tag="tracking_stopped"):
    """From the producers, at once, when a phone app says it stopped tracking: the technician is offline from
    ``recorded_at`` (when the app said so; for a last will, when it was received) until a newer good fix. The id is
    derived from the device, the reason and that time, so an app sending it again repeats it."""

    type: ClassVar[str] = "tracking_stopped"
    data: TrackingStoppedData


Event = (
    LocationRecorded
    | TechnicianUpdated
    | GeofenceEntered
    | GeofenceExited
    | StopStarted
    | StopEnded
    | TripStarted
    | TripEnded
    | StayRetracted
    | TechnicianOffline
    | TechnicianOnline
    | TrackingStopped
)
Crossed = GeofenceEntered | GeofenceExited
Stayed = StopStarted | StopEnded | TripStarted | TripEnded | StayRetracted
STAY_EVENTS: Final = (StopStarted, StopEnded, TripStarted, TripEnded, StayRetracted)
Presence = TechnicianOffline | TechnicianOnline
PRESENCE_EVENTS: Final = (TechnicianOffline, TechnicianOnline)
# What the derived-facts processor appends: facts about a technician, not its state.
Derived = Crossed | Stayed | Presence
DERIVED_EVENTS: Final = (GeofenceEntered, GeofenceExited, *STAY_EVENTS, *PRESENCE_EVENTS)
# Facts about a technician rather than its position or profile: what the processor derives, and what the apps say
# of their tracking. The projector keeps them apart from the history (as report rows and marks).
Fact = Derived | TrackingStopped
FACT_EVENTS: Final = (*DERIVED_EVENTS, TrackingStopped)
# The facts that mark the technician's state (``domain.projection.mark``): what it is doing (stopped or moving since)
# and whether it is online, kept in the projector's table and on every map.
Mark = Stayed | Presence | TrackingStopped
MARK_EVENTS: Final = (*STAY_EVENTS, *PRESENCE_EVENTS, TrackingStopped)
_DECODER: Final[msgspec.json.Decoder[Event]] = msgspec.json.Decoder(Event)
_ENCODER: Final = msgspec.json.Encoder()


class InvalidEventError(ValueError):
    """A record value that is not an event this code understands; ``reason`` says how it failed."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason  # undecodable | unknown_type | unsupported_schema_version | invalid
        self.detail = detail


def decode_event(value: bytes) -> Event:
    """Parse and validate one Kafka record value; raises ``InvalidEventError`` on anything malformed."""
    try:
        return _DECODER.decode(value)
    except msgspec.ValidationError as exc:
        detail = str(exc)
        if detail.endswith("`$.type`") or "field `type`" in detail:
            raise InvalidEventError("unknown_type", detail) from exc
        if detail.endswith("`$.schema_version`"):
            raise InvalidEventError("unsupported_schema_version", detail) from exc
        raise InvalidEventError("invalid", detail) from exc
    except msgspec.DecodeError as exc:
        raise InvalidEventError("undecodable", str(exc)) from exc


def encode_event(event: Event) -> bytes:
    return _ENCODER.encode(event)


def event_json_schema() -> dict[str, Any]:
    """JSON Schema of the topic's values (every event type, discriminated by ``type``)."""
    schema: dict[str, Any] = msgspec.json.schema(Event)
    return schema
