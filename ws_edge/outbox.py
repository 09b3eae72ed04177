"""A connection's outbound buffer: bounded, and conflating per technician while the client is behind.

The fan-out puts frames in without ever awaiting; the connection's writer takes them out as fast as its socket
accepts them, in the order they came (topic order for updates, so the cursor of the last frame written covers
everything before it). A client that keeps up gets every update. Once it is behind (frames waiting for more than
``CONFLATE_AFTER_SECONDS`` or more than ``CONFLATE_AFTER_BYTES`` waiting), a new update of a technician replaces
that technician's update still waiting: the client gets the latest position of each technician, and what waits
stays bounded by the number of technicians. Other frames have keys: one put under a key still waiting replaces it.

``waiting_since`` is when the writer last had nothing to do or last finished a write, whichever is later, while
frames wait: the client is behind by ``now - waiting_since`` seconds. The owner closes it when that or
``pending_bytes`` passes its limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Update:
    """One change of a technician's map entry, encoded once per tenant and shared by every outbox and the resume
    buffer. ``v1`` is the ``location_update`` frame; ``item`` the entry as it goes into a v2 ``location_batch``."""

    technician_id: str
    offset: int
    location: dict[str, object]
    cursor: str
    v1: str
    item: str
    received_at: float  # when the API received the fix (epoch seconds): the start of the end-to-end latency
    size: int  # of the v1 frame: what a client waiting for it is charged


Frame = Update | str  # an update, or any other frame, already encoded

CONFLATE_AFTER_SECONDS = 0.25
CONFLATE_AFTER_BYTES = 256 * 1024


class Outbox:
    """Updates wait under their offset (unique within a tenant's partition), other frames under their key."""

    __slots__ = ("_latest", "_pending", "_waiter", "conflated", "others", "pending_bytes", "waiting_since")

    def __init__(self) -> None:
        self._pending: dict[Hashable, Frame] = {}
        self._latest: dict[str, int] = {}  # technician -> offset of its update put last (maybe written already)
        self._waiter: asyncio.Future[None] | None = None
        self.pending_bytes = 0
        self.waiting_since: float | None = None
        self.conflated = 0  # updates replaced by a later one of the same technician before they were written
        self.others = 0  # frames waiting that are not updates

    def __len__(self) -> int:
        return len(self._pending)

    def put_update(self, update: Update, now: float) -> None:
        """Queue ``update``; while the client is behind, it replaces the technician's update still waiting."""
        pending, since = self._pending, self.waiting_since
        if since is None:
            self.waiting_since = now
        elif now - since > CONFLATE_AFTER_SECONDS or self.pending_bytes > CONFLATE_AFTER_BYTES:
            waiting = self._latest.get(update.technician_id)
            if waiting is not None:
                replaced = pending.pop(waiting, None)
                if replaced is not None:
                    self.pending_bytes -= _size(replaced)
                    self.conflated += 1
        self._latest[update.technician_id] = update.offset
        pending[update.offset] = update
        self.pending_bytes += update.size
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def put(self, key: Hashable, frame: str, now: float) -> None:
        """Queue a frame that is not an update; one still waiting under ``key`` is replaced."""
        replaced = self._pending.pop(key, None)
        if replaced is not None:
            self.pending_bytes -= _size(replaced)
            self.others -= 1
        self._pending[key] = frame
        self.pending_bytes += len(frame)
        self.others += 1
        if self.waiting_since is None:
            self.waiting_since = now
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def put_missed(self, updates: list[Update], now: float) -> None:
        """Queue updates a resuming client missed: every one of them (it is not behind yet)."""
        for update in updates:
            self._pending[update.offset] = update
            self.pending_bytes += update.size
        if updates and self.waiting_since is None:
            self.waiting_since = now

    def discard(self, key: Hashable) -> None:
        """Drop the frame (not an update) waiting under ``key``, if any."""
        dropped = self._pending.pop(key, None)
        if dropped is not None:
            self.pending_bytes -= _size(dropped)
            self.others -= 1
            if not self._pending:
                self.waiting_since = None

    def clear(self) -> None:
        self._pending.clear()
        self._latest.clear()
        self.pending_bytes = self.others = 0
        self.waiting_since = None

    async def take(self) -> list[Frame]:
        """Everything waiting, in order, waiting until there is something."""
        while not self._pending:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        frames = list(self._pending.values())
        self._pending.clear()
        self._latest.clear()
        self.pending_bytes = self.others = 0
        return frames

    def written(self, now: float) -> None:
        """The writer finished writing what it took: the client is behind only if more is waiting."""
        self.waiting_since = now if self._pending else None

    def behind(self, now: float) -> float:
        """Seconds the client has been behind (0 when nothing waits)."""
        return 0.0 if self.waiting_since is None else now - self.waiting_since


def _size(frame: Frame) -> int:
    return frame.size if isinstance(frame, Update) else len(frame)
