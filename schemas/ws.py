"""WebSocket messages of ``/api/v1/field-service/ws/technician-locations``.

Protocol v1 is the seed's: one ``location_update`` per frame. Protocol v2 (subprotocol ``locstream.v2`` or
``?protocol=2``) sends the updates of one flush as one ``location_batch``. Everything else is the same in both.

Server -> client: ``connected``, ``initial_state``, ``resumed``, ``location_update`` (v1) or ``location_batch`` (v2),
``technician_removed``, ``error``, ``pong``.
Client -> server: the text ``ping``; ``auth`` (the token as first message, or a fresh one before the old expires);
``subscribe`` (a filter).

Close codes: 1003 a binary frame; 1008 an invalid token, a role that may not watch, a disallowed Origin, or
messages sent too fast; 1009 an inbound frame over 64 KiB; 1011 the edge could not catch up in time; 1012 the
edge is shutting down (reconnect with the cursor); 1013 too many connections for the tenant (retry later);
4001 no token within the auth timeout, or the token expired; 4008 slow consumer (reconnect with the cursor).
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_INVALID_PAYLOAD = 1007  # a client message nested deeper than locstream.bounded_json.MAX_DEPTH
CLOSE_POLICY_VIOLATION = 1008
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_SERVICE_RESTART = 1012
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_UNAUTHENTICATED = 4001
CLOSE_SLOW_CONSUMER = 4008

SUBPROTOCOL_V1 = "locstream.v1"
SUBPROTOCOL_V2 = "locstream.v2"
# A client that cannot set headers (a browser) may offer its token as a subprotocol ``locstream.bearer.<token>``
# beside locstream.v1 or locstream.v2; the edge answers with the version only, never with the token.
SUBPROTOCOL_TOKEN_PREFIX = "locstream.bearer."

Cursor = str  # opaque: the position of the last update the client has, to resume from


class TechnicianLocation(BaseModel):
    """One technician on the map: an element of ``initial_state.data`` and ``location_update.data``."""

    model_config = ConfigDict(frozen=True)

    technician_id: str
    technician_name: str
    latitude: float
    longitude: float
    last_update: AwareDatetime
    status: str
    # Offline as the derived facts say (``technician_offline``, docs/online-offline.md): since its last fix's time,
    # for a reason ("silent": no good fix for the tenant's threshold); the status is the last one known.
    stale: bool = False
    offline_since: AwareDatetime | None = None
    offline_reason: Literal["silent", "tracking_stopped"] | None = None
    # What its latest stop or trip says (docs/stops-and-trips.md), once it has one: stopped or moving, since when.
    motion: Literal["stopped", "moving"] | None = None
    motion_since: AwareDatetime | None = None
    backfill: bool = False  # a late fix from a device's buffer: show it without animating the marker
    # Only when the last fix had them (the map's details panel); a battery level only from the live feed:
    accuracy_meters: float | None = None
    speed_kmh: float | None = None
    heading: float | None = None
    battery_percent: float | None = None


class Connected(BaseModel):
    type: Literal["connected"] = "connected"
    connection_id: str
    tenant_id: str
    protocol: Literal[1, 2] = 1


class InitialState(BaseModel):
    type: Literal["initial_state"] = "initial_state"
    data: list[TechnicianLocation]
    cursor: Cursor
    resumed: bool | None = Field(default=None, description="false: the cursor given could not be resumed from")
    filter: dict[str, object] | None = Field(
        default=None, description="only in answer to a subscribe: the filter applied ({} for the whole tenant)"
    )


class Resumed(BaseModel):
    """The cursor given was served: ``missed`` updates follow, then the live stream."""

    type: Literal["resumed"] = "resumed"
    cursor: Cursor
    missed: int


class LocationUpdate(BaseModel):
    type: Literal["location_update"] = "location_update"
    data: TechnicianLocation
    cursor: Cursor


class LocationBatch(BaseModel):
    type: Literal["location_batch"] = "location_batch"
    data: list[TechnicianLocation]
    cursor: Cursor = Field(description="the cursor of the last update in the batch")


class TechnicianRemoved(BaseModel):
    type: Literal["technician_removed"] = "technician_removed"
    technician_id: str


class Error(BaseModel):
    type: Literal["error"] = "error"
    message: str


class Pong(BaseModel):
    type: Literal["pong"] = "pong"


class ReplayDone(BaseModel):
    """A paced replay reached the end of its range (``replay_to``); a ``seek`` plays it again from there."""

    type: Literal["replay_done"] = "replay_done"
    events: int = Field(description="updates sent since the last initial_state")


class GeofenceEventData(BaseModel):
    technician_id: str
    technician_name: str
    geofence_id: str
    job_id: str | None
    event_type: Literal["enter", "exit"]
    timestamp: AwareDatetime = Field(description="the crossing fix's device time")
    distance_meters: float = Field(description="from the fence's centre")
    message: str = Field(description='"Ada Obi arrived at Cabinet 12" (or "left")')


class GeofenceEvent(BaseModel):
    """A technician of the tenant entered or left a job site's fence (the origin's shape)."""

    type: Literal["geofence_event"] = "geofence_event"
    data: GeofenceEventData


class GeofenceShape(BaseModel):
    type: Literal["Circle", "Polygon"]
    latitude: float | None = None
    longitude: float | None = None
    radius_meters: float | None = None
    coordinates: list[list[list[float]]] | None = Field(default=None, description="Polygon: GeoJSON, one ring")


class Geofence(BaseModel):
    geofence_id: str
    name: str | None
    job_id: str | None
    title: str | None
    status: str | None
    assigned_technician_id: str | None
    geometry: GeofenceShape
    updated_at: AwareDatetime


class GeofenceUpdated(BaseModel):
    """A fence of the tenant, defined or changed; every fence of the tenant comes so after the first frames."""

    type: Literal["geofence_updated"] = "geofence_updated"
    data: Geofence


class GeofenceRemovedData(BaseModel):
    geofence_id: str


class GeofenceRemoved(BaseModel):
    type: Literal["geofence_removed"] = "geofence_removed"
    data: GeofenceRemovedData


class ReplayControl(BaseModel):
    """Client -> server, during a paced replay: ``pause``, ``resume``, ``seek`` (to a time in the range: a fresh
    initial_state of that moment, then on from there) or ``speed`` (0 to 1000; 0: as fast as the client reads)."""

    type: Literal["pause", "resume", "seek", "speed"]
    to: AwareDatetime | None = Field(default=None, description="seek: ISO 8601 with offset")
    speed: float | None = Field(default=None, ge=0, le=1000, description="speed: the new speed")


class Auth(BaseModel):
    """Client -> server: the token (first message, or a fresh one before the current expires); ``cursor`` to
    resume from may come with the first."""

    type: Literal["auth"] = "auth"
    token: str
    cursor: Cursor | None = None


class Subscribe(BaseModel):
    """Client -> server: watch only the technicians matching every field given; replaces the previous filter."""

    type: Literal["subscribe"] = "subscribe"
    bbox: tuple[float, float, float, float] | None = Field(default=None, description="west, south, east, north")
    technician_ids: list[str] | None = None
    status: list[str] | None = None
    presence: list[Literal["online", "offline"]] | None = Field(
        default=None, description="online: not stale; offline: stale (offline as the derived facts say)"
    )


class Fences(BaseModel):
    """Client -> server: the tenant's fences whose boxes meet this view, as geofence_updated (a tenant with many
    gets none up front); at most one answer every 0.5 s, at most 50,000 positions' worth an answer, by id."""

    type: Literal["fences"] = "fences"
    bbox: tuple[float, float, float, float] = Field(description="west, south, east, north; west > east crosses 180")


PING_TEXT = "ping"
