"""OwnTracks and Overland, read as the apps send them. Pure: a request's JSON in, fixes out (each as the fields of
``LocationFixBody``), or ``TrackerError`` naming the field.

- OwnTracks (HTTP mode): one message per POST; ``_type: location`` carries ``lat``, ``lon``, ``tst`` (unix s),
  ``acc`` (m), ``alt`` (m), ``vel`` (km/h), ``cog`` (degrees), ``batt`` (%), ``bs`` (battery status: 2 charging, 3
  full). Every other ``_type`` (transition, waypoint, card, cmd, lwt, encrypted) and an empty body carry no fix.
- Overland: ``{"locations": [Feature, ...]}``, each a GeoJSON Point ``[lon, lat]`` with ``properties.timestamp``
  (ISO 8601, ``Z`` or ``-0700``), ``speed`` (m/s), ``course``, ``horizontal_accuracy``, ``altitude``,
  ``battery_level`` (0..1), ``battery_state``. Not every feature is a fix: with "Include tracking stats" the app
  sends actions (``properties.action``: ``paused_location_updates``, ``will_terminate``...), with visit tracking
  visits (``action: visit``, the arrival's place), and a trip's end (``properties.type: trip``), each usually at the
  last fix's point and stamped with the time of sending (Overland-iOS ``GLManager.m``): none of them is a position
  taken then, so none is recorded as one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from locstream import bounded_json

MS_TO_KMH = 3.6


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


def owntracks_fix(body: bytes) -> dict[str, Any] | None:
    """The fix of an OwnTracks message, or None (another ``_type``, an empty body)."""
    message = _json(body)
    if message is None:
        return None
    if not isinstance(message, dict):
        raise TrackerError("body: expected a JSON object")
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


def overland_fixes(body: bytes) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """The fixes of an Overland batch, in its order, each with its place (``locations[3].``), and the reasons of the
    features that cannot be read (features without a point are actions and skipped). Only a body that is not a batch
    at all raises ``TrackerError``: one bad feature must not make the app resend the whole batch for ever."""
    document = _json(body)
    if not isinstance(document, dict) or not isinstance(document.get("locations"), list):
        raise TrackerError('body: expected {"locations": [...]}')
    fixes: list[tuple[str, dict[str, Any]]] = []
    rejected: list[str] = []
    for index, feature in enumerate(document["locations"]):
        place = f"locations[{index}]."
        try:
            fields = _overland_fix(feature, place)
        except TrackerError as exc:
            rejected.append(str(exc))
            continue
        if fields is not None:
            fixes.append((place, fields))
    return fixes, rejected


def _overland_fix(feature: Any, place: str) -> dict[str, Any] | None:
    if not isinstance(feature, dict):
        raise TrackerError(f"{place[:-1]}: expected a GeoJSON Feature")
    geometry: Any = feature.get("geometry")
    properties: Any = feature.get("properties") or {}
    if not isinstance(geometry, dict) or geometry.get("type") != "Point":
        return None  # an action (will_terminate...) sent before any fix, not a position
    if not isinstance(properties, dict):
        raise TrackerError(f"{place}properties: expected an object")
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
