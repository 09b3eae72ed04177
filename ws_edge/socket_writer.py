"""The socket writer of a live-feed connection: bytes handed to the transport ``WRITE_PIECE`` at a time while it
takes them (``ws_edge/wire.py``); what it does not take waits in the backlog, in order, until the transport drains.
A big tenant's ``initial_state`` (megabytes, shared by every client connecting meanwhile) is so never copied per
connection, and a control frame (pong, ping, close) never cuts into a frame: it waits behind it.

A mixin of ``ClientSession`` (``ws_edge/session.py``) rather than an object of its own: one more object per
connection is one more for the garbage collector to scan, 10,000 times over. It keeps the transport's flow control
(``pause_writing``); the session decides what to do once the transport drains (``resume_writing``, which calls
``drain_backlog``).
"""

from __future__ import annotations

import asyncio

from ws_edge.wire import WRITE_PIECE


class SocketWriter:
    __slots__ = ("_backlog", "_paused", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._backlog: list[bytes | memoryview] | None = None  # what waits for the transport to drain, in order
        self._paused = False  # the transport's buffer is above its high-water mark

    @property
    def transport_full(self) -> bool:
        """The transport's buffer is above its high-water mark (the client does not read, or not fast enough)."""
        return self._paused

    @property
    def has_backlog(self) -> bool:
        """The rest of a frame (and what came after it) waits for the transport to drain."""
        return self._backlog is not None

    @property
    def writing_blocked(self) -> bool:
        """The transport is full, or something waits in the backlog: nothing new may be handed over now."""
        return self._paused or self._backlog is not None

    def write(self, data: bytes | memoryview) -> bool:
        """Hand ``data`` to the transport (behind whatever waits in the backlog); True when all of it was handed
        over and the transport has room for more."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        if self._backlog is not None:
            self._backlog.append(data)
            return False
        return self._hand_over(data)

    def _hand_over(self, data: bytes | memoryview) -> bool:
        """``WRITE_PIECE`` at a time while the transport takes it; what it does not take goes to the backlog."""
        transport = self.transport
        assert transport is not None
        if len(data) <= WRITE_PIECE:
            transport.write(data)
            return not self._paused
        whole = memoryview(data)
        at = 0
        while at < len(whole) and not self._paused:
            transport.write(whole[at : at + WRITE_PIECE])
            at += WRITE_PIECE
        if at < len(whole):
            self._backlog = [whole[at:]]
            return False
        return not self._paused

    def pause_writing(self) -> None:
        self._paused = True

    def drain_backlog(self) -> bool:
        """The transport drained: hand over what waited. True when all of it went and there is room for more."""
        self._paused = False
        backlog, self._backlog = self._backlog, None
        for at, data in enumerate(backlog or ()):
            if not self._hand_over(data):
                left = backlog[at + 1 :]  # type: ignore[index]
                if left:
                    self._backlog = [*(self._backlog or ()), *left]
                return False
        return True

    def forget_backlog(self) -> None:
        """The connection is gone: nothing that waited will be written."""
        self._backlog = None
