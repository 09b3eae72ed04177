"""The OsmAnd protocol as Traccar Client sends it, in its three generations, read as Traccar's own decoder reads it
(traccar ``OsmAndProtocolDecoder``). Pure: a request's parts in, a fix (or nothing, or the reason) out.

- Legacy Android/iOS apps: everything in the query string, an empty body.
- 10.x: the same fields as a form-encoded body.
- 9.x: a JSON body ``{"location": {"timestamp", "coords": {...}, "battery": {...}}, "device_id"}``.

The device key is the app's device identifier (``id``, ``deviceid`` or ``device_id``). ``lat``/``lon`` or
``location=lat,lon``; ``bearing`` or ``heading``; ``timestamp`` as unix seconds (below 2^31), milliseconds, ISO 8601
(it has a ``T``) or ``yyyy-MM-dd HH:mm:ss`` (UTC). Speeds: knots in the query and the form, m/s in JSON; -1 is
unknown. Battery and charging go to the fix's metadata.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from locstream import bounded_json
from locstream.strict_numbers import decimal

KNOTS_TO_KMH = 1.852
MS_TO_KMH = 3.6
_SECONDS_LIMIT = 2**31  # a timestamp below is in seconds, above in milliseconds (Traccar's rule)


class OsmAndError(ValueError):
    """The request cannot be read; the message names the field."""


@dataclass(frozen=True)
class OsmAndRequest:
    """What the request carried: the device key, and the fix's fields for ``LocationFixBody`` (None: no position)."""

    key: str
    fields: dict[str, Any] | None


def parse(query: Mapping[str, str], content_type: str, body: bytes) -> OsmAndRequest:
    """The request's key and fix; ``OsmAndError`` naming the field when it cannot be read."""
    if content_type.split(";")[0].strip().lower() == "application/json":
        return _parse_json(body)
    values = dict(query)
    if body:
        values.update(_form(body))
    return _parse_fields(values)


def _form(body: bytes) -> dict[str, str]:
    try:
        return dict(parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False))
    except UnicodeDecodeError as exc:
        raise OsmAndError("body: not UTF-8 form data") from exc


def _number(values: Mapping[str, str], *names: str) -> float | None:
    for name in names:
        text = values.get(name)
        if text is None or text == "":
            continue
        try:
            return decimal(text)
        except ValueError as exc:
            raise OsmAndError(f"{name}: {exc}") from exc
    return None


def recorded_at(text: str) -> datetime:
    """A timestamp as Traccar reads it: unix seconds, milliseconds, ISO 8601, or ``yyyy-MM-dd HH:mm:ss`` (UTC)."""
    text = text.strip()
    try:
        if text.isascii() and text.isdigit():  # ASCII digits only: int() would read other scripts' digits too
            value = int(text)
            return datetime.fromtimestamp(value if value < _SECONDS_LIMIT else value / 1000, UTC)
        if "T" in text:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        else:
            moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    except (ValueError, OverflowError, OSError) as exc:
        raise OsmAndError(f"timestamp: {text[:40]!r} is not a time") from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _parse_fields(values: Mapping[str, str]) -> OsmAndRequest:
    key = values.get("id") or values.get("deviceid") or values.get("device_id") or ""
    latitude, longitude = _number(values, "lat"), _number(values, "lon")
    if (latitude is None or longitude is None) and values.get("location"):
        parts = values["location"].split(",")
        if len(parts) != 2:
            raise OsmAndError("location: expected lat,lon")
        latitude, longitude = _number({"lat": parts[0]}, "lat"), _number({"lon": parts[1]}, "lon")
    if latitude is None or longitude is None:
        return OsmAndRequest(key, None)
    fields: dict[str, Any] = {"latitude": latitude, "longitude": longitude}
    stamp = values.get("timestamp")
    if stamp:
        fields["recorded_at"] = recorded_at(stamp)
    speed = _number(values, "speed")
    if speed is not None and speed >= 0:
        fields["speed_kmh"] = round(speed * KNOTS_TO_KMH, 3)
    heading = _number(values, "bearing", "heading")
    if heading is not None and heading >= 0:
        fields["heading"] = heading % 360
    for name, field in (("accuracy", "accuracy_meters"), ("altitude", "altitude")):
        value = _number(values, name)
        if value is not None:
            fields[field] = value
    metadata: dict[str, Any] = {}
    battery = _number(values, "batt")
    if battery is not None and 0 <= battery <= 100:  # else not a battery level (-1: the app does not know): left out
        metadata["battery_percent"] = battery
    if values.get("charge") is not None:
        metadata["charging"] = values["charge"].lower() == "true"
    if metadata:
        fields["metadata"] = metadata
    if values.get("mock", "").lower() == "true":  # Traccar Client for Android: Location.isFromMockProvider()
        fields["mock"] = True
    return OsmAndRequest(key, fields)


def _parse_json(body: bytes) -> OsmAndRequest:
    try:
        document = bounded_json.loads(body)
    except ValueError as exc:
        raise OsmAndError(f"body: {exc}") from exc
    if not isinstance(document, dict):
        raise OsmAndError("body: expected a JSON object")
    key = document.get("device_id")
    if not isinstance(key, str):
        raise OsmAndError("device_id: expected the device identifier as a string")
    location = document.get("location")
    if not isinstance(location, dict) or not isinstance(location.get("coords"), dict):
        return OsmAndRequest(key, None)
    coords = location["coords"]
    fields: dict[str, Any] = {"latitude": coords.get("latitude"), "longitude": coords.get("longitude")}
    if fields["latitude"] is None or fields["longitude"] is None:
        return OsmAndRequest(key, None)
    if isinstance(location.get("timestamp"), str):
        fields["recorded_at"] = recorded_at(location["timestamp"])
    speed = coords.get("speed")
    if isinstance(speed, (int, float)) and not isinstance(speed, bool) and speed >= 0:
        fields["speed_kmh"] = round(speed * MS_TO_KMH, 3)
    heading = coords.get("heading")
    if isinstance(heading, (int, float)) and not isinstance(heading, bool) and heading >= 0:
        fields["heading"] = heading % 360
    for name, field in (("accuracy", "accuracy_meters"), ("altitude", "altitude")):
        if coords.get(name) is not None:
            fields[field] = coords[name]
    battery = location.get("battery")
    metadata: dict[str, Any] = {}
    if isinstance(battery, dict):
        level = battery.get("level")
        if isinstance(level, (int, float)) and not isinstance(level, bool) and 0 <= level <= 1:  # else left out
            metadata["battery_percent"] = round(level * 100, 1)
        if isinstance(battery.get("is_charging"), bool):
            metadata["charging"] = battery["is_charging"]
    if metadata:
        fields["metadata"] = metadata
    return OsmAndRequest(key, fields)
