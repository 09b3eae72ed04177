"""OwnTracks and Overland, read as the apps send them. Pure: a request's JSON in, fixes out (each as the fields of
``LocationFixBody``) and the app's saying it stopped tracking (``StopSignal``), or ``TrackerError`` naming the field.

- OwnTracks (HTTP mode): one message per POST; ``_type: location`` carries ``lat``, ``lon``, ``tst`` (unix s),
  ``acc`` (m), ``alt`` (m), ``vel`` (km/h), ``cog`` (degrees), ``batt`` (%), ``bs`` (battery status: 2 charging, 3
  full). ``_type: lwt`` is the app's last will, which its MQTT broker publishes when the app vanishes (an HTTP bridge
  may forward it; its ``tst`` is when the app connected, so it is taken as said when received): tracking stopped.
  Every other ``_type`` (transition, waypoint, card, cmd, encrypted) and an empty body carry nothing for us.
- Overland: ``{"locations": [Feature, ...]}``, each a GeoJSON Point ``[lon, lat]`` with ``properties.timestamp``
  (ISO 8601, ``Z`` or ``-0700``), ``speed`` (m/s), ``course``, ``horizontal_accuracy``, ``altitude``,
  ``battery_level`` (0..1), ``battery_state``. Not every feature is a fix: with "Include tracking stats" the app
  sends actions (``properties.action``: ``paused_location_updates``, ``will_terminate``...), with visit tracking
  visits (``action: visit``, the arrival's place), and a trip's end (``properties.type: trip``), each usually at the
  last fix's point and stamped with the time of sending (Overland-iOS ``GLManager.m``): none of them is a position
  taken then, so none is recorded as one. Two actions say tracking stopped, at their ``timestamp``:
  ``paused_location_updates`` (iOS paused the updates) and ``will_terminate`` (the app was closed: logged then, sent
  with the next batch, after a relaunch).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from locstream import bounded_json

MS_TO_KMH = 3.6
OVERLAND_STOPS: dict[str, Literal["paused", "terminated"]] = {
    "paused_location_updates": "paused",
    "will_terminate": "terminated",
}


@dataclass(frozen=True, slots=True)
class StopSignal:
    """An app's saying it stopped tracking (``schemas.events.TrackingStopped``); ``at`` None: when it was received."""

    reason: Literal["paused", "terminated", "last_will"]
    app: Literal["overland", "owntracks"]
    at: datetime | None
    place: str = ""  # where in the request (``locations[3].``), for the reasons


class TrackerError(ValueError):
    """The request cannot be read; the message names the field."""


def _json(body: bytes) -> Any:
    if not body.strip():
        return None
    try:
        return bounded_json.loads(body)
    except ValueError as exc:
        raise TrackerError(f"body: {exc}") from exc


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(mapping: dict[str, Any], name: str) -> float | None:
    """``mapping[name]`` when it is a number (not a boolean), else None."""
    value: Any = mapping.get(name)
    return float(value) if _real(value) else None


def _time(value: Any, name: str) -> datetime:
    if _real(value):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (ValueError, OverflowError, OSError) as exc:
            raise TrackerError(f"{name}: {value!r} is not a time") from exc
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise TrackerError(f"{name}: {value[:40]!r} is not an ISO 8601 time") from exc
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    raise TrackerError(f"{name}: expected a time")


def owntracks_message(body: bytes) -> dict[str, Any] | StopSignal | None:
    """The fix of an OwnTracks message, its last will (tracking stopped), or None (another ``_type``, an empty
    body)."""
    message = _json(body)
    if message is None:
        return None
    if not isinstance(message, dict):
        raise TrackerError("body: expected a JSON object")
    if message.get("_type") == "lwt":
        return StopSignal("last_will", "owntracks", None)
    if message.get("_type") != "location":
        return None
    fields: dict[str, Any] = {"latitude": message.get("lat"), "longitude": message.get("lon")}
    if "tst" in message:
        fields["recorded_at"] = _time(message["tst"], "tst")
    for name, field in (("acc", "accuracy_meters"), ("alt", "altitude"), ("vel", "speed_kmh"), ("cog", "heading")):
        if message.get(name) is not None:
            fields[field] = message[name]
    metadata: dict[str, Any] = {}
    if message.get("batt") is not None:
        if not _real(message["batt"]):
            raise TrackerError(f"batt: {message['batt']!r} is not a number")
        if 0 <= message["batt"] <= 100:  # else not a battery level: left out, the fix taken
            metadata["battery_percent"] = message["batt"]
    if message.get("bs") in (1, 2, 3):
        metadata["charging"] = message["bs"] in (2, 3)
    if metadata:
        fields["metadata"] = metadata
    return fields


@dataclass(frozen=True, slots=True)
class OverlandBatch:
    fixes: list[tuple[str, dict[str, Any]]]  # each with its place (``locations[3].``)
    stops: list[StopSignal]  # the actions saying tracking stopped
    rejected: list[str]  # the reasons of the features that cannot be read


def overland_batch(body: bytes) -> OverlandBatch:
    """The fixes and the stop actions of an Overland batch, in its order, and the reasons of the features that cannot
    be read (other actions are skipped). Only a body that is not a batch at all raises ``TrackerError``: one bad
    feature must not make the app resend the whole batch for ever."""
    document = _json(body)
    if not isinstance(document, dict) or not isinstance(document.get("locations"), list):
        raise TrackerError('body: expected {"locations": [...]}')
    batch = OverlandBatch([], [], [])
    for index, feature in enumerate(document["locations"]):
        place = f"locations[{index}]."
        try:
            found = _overland_feature(feature, place)
        except TrackerError as exc:
            batch.rejected.append(str(exc))
            continue
        if isinstance(found, StopSignal):
            batch.stops.append(found)
        elif found is not None:
            batch.fixes.append((place, found))
    return batch


def _overland_feature(feature: Any, place: str) -> dict[str, Any] | StopSignal | None:
    if not isinstance(feature, dict):
        raise TrackerError(f"{place[:-1]}: expected a GeoJSON Feature")
    geometry: Any = feature.get("geometry")
    properties: Any = feature.get("properties") or {}
    if not isinstance(properties, dict):
        raise TrackerError(f"{place}properties: expected an object")
    action = properties.get("action")
    if isinstance(action, str) and action in OVERLAND_STOPS:
        if "timestamp" not in properties:
            raise TrackerError(f"{place}properties.timestamp: an action needs its time")
        at = _time(properties["timestamp"], f"{place}properties.timestamp")
        return StopSignal(OVERLAND_STOPS[action], "overland", at, place)
    if not isinstance(geometry, dict) or geometry.get("type") != "Point":
        return None  # another action sent before any fix, not a position
    if "action" in properties or properties.get("type") == "trip":
        return None  # an action, a visit or a trip's end at an old or made-up point (the module's docstring)
    coordinates = geometry.get("coordinates")
    if not isinstance(coordinates, list) or len(coordinates) < 2:
        raise TrackerError(f"{place}geometry: expected a Point [lon, lat]")
    fields: dict[str, Any] = {"longitude": coordinates[0], "latitude": coordinates[1]}
    if "timestamp" in properties:
        fields["recorded_at"] = _time(properties["timestamp"], f"{place}properties.timestamp")
    speed, course = _number(properties, "speed"), _number(properties, "course")
    if speed is not None and speed >= 0:
        fields["speed_kmh"] = round(speed * MS_TO_KMH, 3)
    if course is not None and course >= 0:
        fields["heading"] = course % 360
    accuracy, altitude = _number(properties, "horizontal_accuracy"), _number(properties, "altitude")
    if accuracy is not None and accuracy >= 0:  # -1: unknown
        fields["accuracy_meters"] = accuracy
    if altitude is not None:
        fields["altitude"] = altitude
    metadata: dict[str, Any] = {}
    level = _number(properties, "battery_level")
    if level is not None and 0 <= level <= 1:  # else not a battery level (-1: unknown): left out
        metadata["battery_percent"] = round(level * 100, 1)
    if properties.get("battery_state") in ("charging", "full", "unplugged"):
        metadata["charging"] = properties["battery_state"] != "unplugged"
    if metadata:
        fields["metadata"] = metadata
    return fields
