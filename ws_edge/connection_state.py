"""A live-feed connection's state, Sans-I/O: its phase, the server's pings and the close handshake (RFC 6455, 5.5.2,
5.5.3 and 7), as decisions with no socket, no timer and no loop.

The session (``ws_edge/session.py``) does the I/O around them: it writes the frames these return, arms a timer for
each delay they return, and drops the connection when they say so. ``tests/ws_edge/test_connection_state.py`` drives
them by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ws_edge.framing import OP_CLOSE, FramingError, close_frame, close_payload, control_frame

MAX_CLOSE_REASON = 120  # characters of a close reason: a close frame's payload is at most 125 bytes


class Phase(Enum):
    OPENING = 1  # upgraded; the token is being waited for or verified, the first frames not written yet
    LIVE = 2  # subscribed: the fan-out writes to it
    CLOSING = 3  # a close frame was sent or is waiting in the backlog
    GONE = 4


@dataclass(slots=True)
class Liveness:
    """The server's pings: one every ``interval`` seconds; a peer whose pong has not come ``timeout`` seconds after
    its ping is taken for dead."""

    interval: float
    timeout: float
    awaiting_pong: bool = False

    def ping_sent(self) -> float:
        """A ping went out: the seconds until its pong is due."""
        self.awaiting_pong = True
        return self.timeout

    def pong_received(self) -> None:
        self.awaiting_pong = False

    def pong_due(self) -> float | None:
        """The pong's time is up: None when it did not come (drop the peer), else the seconds until the next ping."""
        if self.awaiting_pong:
            return None
        return max(0.0, self.interval - self.timeout)


def edge_close(phase: Phase, code: int, reason: str) -> bytes | None:
    """The close frame to send when the edge closes (slow consumer, expired token, a policy violation, shutdown);
    None when a close is under way or the connection is gone. The phase is ``CLOSING`` from then on."""
    if phase in (Phase.CLOSING, Phase.GONE):
        return None
    return close_frame(code, reason[:MAX_CLOSE_REASON])


@dataclass(frozen=True, slots=True)
class PeerClose:
    """What the client's close frame calls for: its ``code`` (1002 or 1007 when the frame itself was bad), the
    close frame to answer with (None: nothing is answered), and whether to drop the connection rather than end it
    cleanly."""

    code: int
    answer: bytes | None
    drop: bool = False


def peer_close(phase: Phase, payload: bytes, has_backlog: bool) -> PeerClose:
    """The client's close frame in ``phase``. When it answers the edge's close, nothing is sent back. Otherwise the
    answer echoes its code, unless the rest of a frame waits to be written (``has_backlog``): no close frame can go
    before it, so the connection is dropped. Either way the server then ends the TCP connection (RFC 6455, 7.1.1)."""
    try:
        code, _ = close_payload(payload)
        answer = control_frame(OP_CLOSE, payload[:2])
    except FramingError as exc:
        code, answer = exc.code, close_frame(exc.code, exc.reason)
    if phase is Phase.CLOSING:
        return PeerClose(code, None)
    if has_backlog:
        return PeerClose(code, None, drop=True)
    return PeerClose(code, answer)
