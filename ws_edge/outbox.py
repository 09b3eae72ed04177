"""A connection's outbound frames: its position in its tenant's resume buffer, plus frames of its own.

Publishing an update appends it once to the tenant's resume buffer (``ws_edge/resume_buffer.py``); no per-client
work happens then. A connection's session takes, at once, its own frames (a
pong, an answer to ``subscribe``) and every entry from its position on, in topic order, so the cursor of the last
frame written covers everything before it. A client that keeps up gets every update; one that is behind gets what
the conflation policy leaves (``ws_edge/conflation.py``).

The owner (``ws_edge/fanout.py``) closes a connection that is behind past its limits: a write unfinished for too
long, too many bytes yet to get, or a position the buffer has already evicted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Update:
    """One change of a technician's map entry, encoded once per tenant and shared by every client of the tenant.
    ``frame`` is the ``location_update`` as a WebSocket frame; ``item`` the entry as it goes into a v2
    ``location_batch``."""

    technician_id: str
    offset: int
    location: dict[str, object]
    cursor: str
    frame: bytes
    item: str
    received_at: float  # when the API received the fix (epoch seconds): the start of the end-to-end latency
    size: int  # of the location_update's text

    @property
    def v1(self) -> str:
        """The ``location_update`` text."""
        return self.frame[len(self.frame) - self.size :].decode()


@dataclass(frozen=True, slots=True)
class Note:
    """A frame about one technician that is not an update (a ``geofence_event``), in the tenant's stream."""

    technician_id: str
    text: str
    size: int


Entry = Update | Note  # what a tenant's resume buffer holds
Message = Update | str  # what a session is sent: an update, or any other message as its JSON text


class Outbox:
    __slots__ = ("conflated", "exact_until", "extras", "on_work", "position", "writing_since")

    def __init__(self, position: int) -> None:
        self.position = position  # seq of the next entry of the tenant's buffer this connection has not taken
        self.exact_until = position  # entries before this seq are never conflated (what a resuming client missed)
        self.extras: list[str] = []  # frames of its own, written before the entries
        self.on_work: Callable[[], None] | None = None  # its session writes when called (``ws_edge/session.py``)
        self.writing_since: float | None = None  # a write is under way since then
        self.conflated = 0  # updates left out because a newer one of the same technician was taken with them

    def wake(self) -> None:
        """There is something to write that the fan-out could not write through: a frame of its own, or entries its
        session is to take once its socket drains (or afresh, when they were evicted)."""
        if self.on_work is not None:
            self.on_work()

    def add(self, text: str) -> None:
        self.extras.append(text)
        self.wake()
