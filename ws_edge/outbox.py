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


Frame = Update | str  # an update, or any other frame, already encoded

CONFLATE_AFTER_SECONDS = 0.25
CONFLATE_AFTER_BYTES = 256 * 1024


class Outbox:
    __slots__ = ("_latest", "_pending", "_waiter", "conflated", "pending_bytes", "waiting_since")

    def __init__(self) -> None:
        self._pending: dict[Hashable, Frame] = {}
        self._latest: dict[str, Hashable] = {}  # technician -> key of its update put last (maybe written already)
        self._waiter: asyncio.Future[None] | None = None
        self.pending_bytes = 0
        self.waiting_since: float | None = None
        self.conflated = 0  # updates replaced by a later one of the same technician before they were written

    def __len__(self) -> int:
        return len(self._pending)

    def put_update(self, update: Update, now: float) -> None:
        """Queue ``update``; while the client is behind, it replaces the technician's update still waiting."""
        technician_id = update.technician_id
        if self.waiting_since is not None and (
            now - self.waiting_since > CONFLATE_AFTER_SECONDS or self.pending_bytes > CONFLATE_AFTER_BYTES
        ):
            waiting = self._latest.get(technician_id)
            if waiting is not None and waiting in self._pending:
                self.pending_bytes -= _size(self._pending.pop(waiting))
                self.conflated += 1
        key = (technician_id, update.offset)
        self._latest[technician_id] = key
        self.put(key, update, now)

    def put(self, key: Hashable, frame: Frame, now: float) -> None:
        replaced = self._pending.pop(key, None)
        if replaced is not None:
            self.pending_bytes -= _size(replaced)
            self.conflated += isinstance(replaced, Update)
        self._pending[key] = frame
        self.pending_bytes += _size(frame)
        if self.waiting_since is None:
            self.waiting_since = now
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def discard(self, key: Hashable) -> None:
        dropped = self._pending.pop(key, None)
        if dropped is not None:
            self.pending_bytes -= _size(dropped)
            if not self._pending:
                self.waiting_since = None

    def clear(self) -> None:
        self._pending.clear()
        self._latest.clear()
        self.pending_bytes = 0
        self.waiting_since = None

    async def take(self, everything: bool) -> list[Frame]:
        """The oldest waiting frame (or all of them), waiting until there is one."""
        while not self._pending:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if everything:
            frames = list(self._pending.values())
            self._pending.clear()
            self._latest.clear()
            self.pending_bytes = 0
            return frames
        key = next(iter(self._pending))
        frame = self._pending.pop(key)
        self.pending_bytes -= _size(frame)
        if not self._pending:
            self._latest.clear()
        return [frame]

    def written(self, now: float) -> None:
        """The writer finished writing what it took: the client is behind only if more is waiting."""
        self.waiting_since = now if self._pending else None

    def behind(self, now: float) -> float:
        """Seconds the client has been behind (0 when nothing waits)."""
        return 0.0 if self.waiting_since is None else now - self.waiting_since


def _size(frame: Frame) -> int:
    return len(frame.v1) if isinstance(frame, Update) else len(frame)
