"""Encoding the edge's outbound frames, once per tenant, on the hot path.

orjson encodes a location_update about 5x faster than building and dumping the pydantic model (measured
~1.0 us vs ~4.9 us here); the pydantic models in ``schemas.ws`` stay the contract, and a test checks that
these frames validate against them.
"""

from __future__ import annotations

from typing import Any

import orjson

from domain.projection import TechnicianState
from schemas.events import Crossed, GeofenceEntered
from ws_edge.framing import text_frame
from ws_edge.outbox import Update

Location = dict[str, Any]  # the fields of ``schemas.ws.TechnicianLocation``

_OPTIONS = orjson.OPT_UTC_Z  # "2026-11-26T08:30:00Z", as the seed wrote times


def location_of(state: TechnicianState) -> Location | None:
    """The map's view of a technician; None until it has a position.

    ``stale`` is true while the technician is offline as the derived facts say (``technician_offline``, until a
    newer fix or its ``technician_online``: ``domain/projection.py``), with ``offline_since`` (its last fix's time)
    and ``offline_reason``; the technician keeps its last status. ``motion`` ("stopped" or "moving") and
    ``motion_since`` come from its latest stop or trip, once there is one. ``accuracy_meters``, ``speed_kmh``,
    ``heading`` and ``battery_percent`` are there only when the last fix had them (a battery level is known from the
    live feed only: the projection's table does not keep it).
    """
    fix = state.fix
    if fix is None:
        return None
    offline = state.offline
    location: Location = {
        "technician_id": state.technician_id,
        "technician_name": state.display_name,
        "latitude": fix.latitude,
        "longitude": fix.longitude,
        "last_update": fix.recorded_at,
        "status": state.status,
        "stale": offline is not None,
    }
    for name in _DETAILS:  # the details panel's fields, only when the fix had them
        value = getattr(fix, name)
        if value is not None:
            location[name] = value
    if offline is not None:
        location["offline_since"] = offline.last_seen_at
        location["offline_reason"] = offline.reason
    if state.stay is not None:
        location["motion"], location["motion_since"] = state.stay.motion()
    return location


_DETAILS = ("accuracy_meters", "speed_kmh", "heading", "battery_percent")


def encode(message: dict[str, Any] | list[Location]) -> str:
    return orjson.dumps(message, option=_OPTIONS).decode()


def connected(connection_id: str, tenant_id: str, protocol: int = 1) -> str:
    return encode({"type": "connected", "connection_id": connection_id, "tenant_id": tenant_id, "protocol": protocol})


def initial_state(
    locations: list[Location] | str, cursor: str, resumed: bool | None = None, answers: dict[str, Any] | None = None
) -> str:
    """The tenant's map (filtered as the client subscribed; ``locations`` may come encoded already, as the view
    caches it for crowds that connect together); ``resumed: false`` only when the client asked to resume from a
    cursor the edge could no longer serve; ``filter`` (the subscribe's fields, ``{}`` for the whole tenant) only
    when it answers a subscribe: several subscribes in quick succession get one answer, for the last."""
    data = locations if isinstance(locations, str) else encode(locations)
    extra = "" if resumed is None else f',"resumed":{"true" if resumed else "false"}'
    if answers is not None:
        extra += f',"filter":{encode(answers)}'
    return f'{{"type":"initial_state","data":{data},"cursor":"{cursor}"{extra}}}'


def initial_state_parts(cursor: str, resumed: bool | None = None) -> tuple[bytes, bytes]:
    """What goes before and after the locations of an ``initial_state`` built from encoded pieces
    (``ws_edge/initial_state.py``): the same text as ``initial_state``."""
    before, after = initial_state("[]", cursor, resumed).split('"data":[]', 1)
    return f'{before}"data":['.encode(), f"]{after}".encode()


def locations_json_items(locations: list[Location]) -> bytes:
    """``locations`` as the items of a JSON list, without its brackets (empty: no item)."""
    return orjson.dumps(locations, option=_OPTIONS)[1:-1]


def resumed(cursor: str, missed: int) -> str:
    """The client's cursor was served: ``missed`` updates follow, then the live stream."""
    return encode({"type": "resumed", "cursor": cursor, "missed": missed})


def update(location: Location, offset: int, cursor: str, *, backfill: bool = False, received_at: float = 0.0) -> Update:
    """One technician's new map entry, encoded once for every client of the tenant. ``backfill`` (only when true): a
    fix sent late from a device's buffer, which maps show without animating the marker along the way."""
    item = encode({**location, "backfill": True} if backfill else location)
    v1 = f'{{"type":"location_update","data":{item},"cursor":"{cursor}"}}'.encode()
    return Update(str(location["technician_id"]), offset, location, cursor, text_frame(v1), item, received_at, len(v1))


def location_batch(updates: list[Update]) -> str:
    """Protocol v2: the updates of one flush in one frame, with the cursor of the last."""
    return f'{{"type":"location_batch","data":[{",".join(u.item for u in updates)}],"cursor":"{updates[-1].cursor}"}}'


def technician_removed(technician_id: str) -> str:
    """The technician left the client's filter: maps drop its marker."""
    return encode({"type": "technician_removed", "technician_id": technician_id})


def error(message: str) -> str:
    """A client message the edge could not take (the connection stays open)."""
    return encode({"type": "error", "message": message})


def replay_done(events: int) -> str:
    return encode({"type": "replay_done", "events": events})


PONG = encode({"type": "pong"})


def geofence_event(crossing: Crossed, technician_name: str) -> str:
    """The origin's ``geofence_event`` frame (its ``message``: "Ada Obi arrived at Cabinet 12")."""
    data = crossing.data
    entered = isinstance(crossing, GeofenceEntered)
    place = data.geofence_name or (f"job {data.job_id}" if data.job_id else f"geofence {data.geofence_id}")
    return encode(
        {
            "type": "geofence_event",
            "data": {
                "technician_id": crossing.technician_id,
                "technician_name": technician_name,
                "geofence_id": data.geofence_id,
                "job_id": data.job_id,
                "event_type": "enter" if entered else "exit",
                "timestamp": crossing.recorded_at.isoformat(),
                "distance_meters": round(data.distance_meters, 1),
                "message": f"{technician_name} {'arrived at' if entered else 'left'} {place}",
            },
        }
    )


def geofence_updated(fence: dict[str, Any]) -> str:
    return encode({"type": "geofence_updated", "data": fence})


def geofence_removed(geofence_id: str) -> str:
    return encode({"type": "geofence_removed", "data": {"geofence_id": geofence_id}})
