"""WebSocket messages of ``/api/v1/field-service/ws/technician-locations`` (the seed's protocol, v1).

Server -> client: ``connected``, ``initial_state``, ``location_update``, ``pong``.
Client -> server: the text ``ping``.
Close codes: 1003 a binary frame; 1008 missing/invalid token or role; 4008 slow consumer (its outbound
queue overflowed); 1011 the edge could not catch up in time; 1012 server restart.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_POLICY_VIOLATION = 1008
CLOSE_INTERNAL_ERROR = 1011
CLOSE_SERVICE_RESTART = 1012
CLOSE_SLOW_CONSUMER = 4008


class TechnicianLocation(BaseModel):
    """One technician on the map: an element of ``initial_state.data`` and ``location_update.data``."""

    model_config = ConfigDict(frozen=True)

    technician_id: str
    technician_name: str
    latitude: float
    longitude: float
    last_update: AwareDatetime
    status: str
    stale: bool = False  # no fix for longer than the edge's stale threshold; the status is the last one known


class Connected(BaseModel):
    type: Literal["connected"] = "connected"
    connection_id: str
    tenant_id: str


class InitialState(BaseModel):
    type: Literal["initial_state"] = "initial_state"
    data: list[TechnicianLocation]


class LocationUpdate(BaseModel):
    type: Literal["location_update"] = "location_update"
    data: TechnicianLocation


class Pong(BaseModel):
    type: Literal["pong"] = "pong"


PING_TEXT = "ping"
