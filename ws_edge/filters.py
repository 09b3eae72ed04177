"""What part of its tenant's fleet a client watches: ``{"type": "subscribe", "bbox", "technician_ids", "status",
"presence"}`` (``presence``: ``["online"]`` or ``["offline"]``, as the location's ``stale`` says).

Every field is optional and they combine (a technician must match all that are given); a new subscribe replaces
the previous filter. A bbox whose west edge is east of its east edge crosses the antimeridian.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_LISTED = 10_000  # technician ids or statuses in one filter
PRESENCES = frozenset({"online", "offline"})


class FilterError(ValueError):
    """A subscribe message that cannot be taken; the text names the field."""


@dataclass(frozen=True, slots=True)
class Filter:
    bbox: tuple[float, float, float, float] | None = None  # west, south, east, north
    technician_ids: frozenset[str] | None = None
    statuses: frozenset[str] | None = None
    presence: frozenset[str] | None = None  # "online", "offline"

    def matches(self, location: Mapping[str, Any]) -> bool:
        if self.technician_ids is not None and location["technician_id"] not in self.technician_ids:
            return False
        if self.statuses is not None and location["status"] not in self.statuses:
            return False
        if self.presence is not None and ("offline" if location["stale"] else "online") not in self.presence:
            return False
        if self.bbox is not None:
            west, south, east, north = self.bbox
            latitude, longitude = location["latitude"], location["longitude"]
            if not south <= latitude <= north:
                return False
            if west <= east:
                return bool(west <= longitude <= east)
            return bool(longitude >= west or longitude <= east)
        return True


EVERYTHING = Filter()


def described(subscription: Filter) -> dict[str, Any]:
    """The subscribe fields of a filter (sorted lists): what an initial_state answering it echoes."""
    fields: dict[str, Any] = {}
    if subscription.bbox is not None:
        fields["bbox"] = list(subscription.bbox)
    if subscription.technician_ids is not None:
        fields["technician_ids"] = sorted(subscription.technician_ids)
    if subscription.statuses is not None:
        fields["status"] = sorted(subscription.statuses)
    if subscription.presence is not None:
        fields["presence"] = sorted(subscription.presence)
    return fields


def parse_subscribe(message: Mapping[str, Any]) -> Filter:
    """The filter of a subscribe message, or ``FilterError`` naming the field."""
    unknown = set(message) - {"type", "bbox", "technician_ids", "status", "presence"}
    if unknown:
        raise FilterError(f"subscribe: unknown field {sorted(unknown)[0]!r}")
    presence = _strings(message, "presence")
    if presence is not None and not presence <= PRESENCES:
        raise FilterError(f"presence: only {sorted(PRESENCES)} expected")
    return Filter(
        bbox=parse_bbox(message["bbox"]) if message.get("bbox") is not None else None,
        technician_ids=_strings(message, "technician_ids"),
        statuses=_strings(message, "status"),
        presence=presence,
    )


def parse_bbox(value: Any) -> tuple[float, float, float, float]:
    if not isinstance(value, list) or len(value) != 4:
        raise FilterError("bbox: [west, south, east, north] expected")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        raise FilterError("bbox: four finite numbers expected")
    west, south, east, north = (float(v) for v in value)
    if not (-180 <= west <= 180 and -180 <= east <= 180):
        raise FilterError("bbox: west and east must be within [-180, 180]")
    if not (-90 <= south <= north <= 90):
        raise FilterError("bbox: south and north must be within [-90, 90], south <= north")
    return west, south, east, north


def _strings(message: Mapping[str, Any], field: str) -> frozenset[str] | None:
    value = message.get(field)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FilterError(f"{field}: a list of strings expected")
    if len(value) > MAX_LISTED:
        raise FilterError(f"{field}: at most {MAX_LISTED} entries")
    return frozenset(value)
