"""What a fix must satisfy beyond its schema: a plausible device time, a bounded ``metadata``, and a battery level
(``metadata.battery_percent``) from 0 to 100. The apps' parsers leave an impossible level out rather than refuse
the fix (an app would resend it for ever); a native client is told. Pure."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import msgspec

from locstream import bounded_json
from schemas.events import MAX_METADATA_BYTES


def fix_problem(
    recorded_at: datetime, metadata: dict[str, Any] | None, now: datetime, max_future: timedelta, max_age: timedelta
) -> str | None:
    """Why the fix cannot be taken (naming the field), or None."""
    if recorded_at > now + max_future:
        return f"recorded_at: {recorded_at.isoformat()} is more than {max_future.total_seconds():g} s in the future"
    if recorded_at < now - max_age:
        return f"recorded_at: {recorded_at.isoformat()} is older than the topic's retention ({max_age.days} days)"
    if metadata is not None:
        battery = metadata.get("battery_percent")
        if battery is not None and not (_real(battery) and 0 <= battery <= 100):
            return f"metadata.battery_percent: {str(battery)[:20]} is not a battery level from 0 to 100"
        if bounded_json.depth(metadata) >= bounded_json.MAX_DEPTH:  # metadata itself is one level of the body
            return f"metadata: nested deeper than {bounded_json.MAX_DEPTH - 1} levels"
        size = len(msgspec.json.encode(metadata))
        if size > MAX_METADATA_BYTES:
            return f"metadata: {size} bytes as JSON, at most {MAX_METADATA_BYTES}"
    return None


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
