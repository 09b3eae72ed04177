"""What a client may send on the map feed, live or replay, before what it says is read: JSON text only, and no
faster than ``LOCSTREAM_EDGE_CLIENT_MESSAGE_RATE`` (burst 4x). Pure: the caller gives the clock."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from locstream.token_bucket import TokenBucket
from schemas.ws import CLOSE_POLICY_VIOLATION, CLOSE_UNSUPPORTED_DATA


class InboundRule:
    """One connection's inbound limits; ``rate`` 0 disables the rate."""

    __slots__ = ("_bucket",)

    def __init__(self, rate: float, now: float) -> None:
        burst = max(1, int(rate * 4))
        self._bucket = TokenBucket(rate, burst, float(burst), now) if rate else None

    def refusal(self, message: Mapping[str, Any], now: float) -> tuple[int, str] | None:
        """The close code and reason a received ``websocket.receive`` message earns, or None when it may be read."""
        if message.get("text") is None:
            return CLOSE_UNSUPPORTED_DATA, "binary frames are not part of the protocol"
        return self.too_fast(1, now)

    def too_fast(self, frames: int, now: float) -> tuple[int, str] | None:
        """The close code and reason when ``frames`` more frames (of messages, fragments, pings, pongs) go over the
        rate, or None (they are counted)."""
        bucket = self._bucket
        if bucket is None or frames == 0:
            return None
        if bucket.wait_for(frames, now) > 0:
            return CLOSE_POLICY_VIOLATION, "messages sent too fast"
        bucket.take(frames, now)
        return None
