"""What a fix must satisfy beyond its schema: a plausible device time and a bounded ``metadata``. Pure."""

from __future__ import annotations

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
        if bounded_json.depth(metadata) >= bounded_json.MAX_DEPTH:  # metadata itself is one level of the body
            return f"metadata: nested deeper than {bounded_json.MAX_DEPTH - 1} levels"
        size = len(msgspec.json.encode(metadata))
        if size > MAX_METADATA_BYTES:
            return f"metadata: {size} bytes as JSON, at most {MAX_METADATA_BYTES}"
    return None
