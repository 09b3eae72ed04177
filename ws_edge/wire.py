"""Frames on the wire: what a session takes, encoded as WebSocket frames (``encode``); and the paced replays' wire.

A server's frames are not masked, so a frame's bytes are the same for every client that gets it: a
``location_update`` is framed once per tenant (``Update.frame``), and a run of the tenant's stream that many
clients take alike is encoded once for all of them (``TenantResumeBuffer.encoded``). A live-feed session writes them
to its transport itself (``ws_edge/session.py``); a paced replay, an ASGI WebSocket, writes through ``RawWire`` under
``locstream.serve`` (its transport, via uvicorn's protocol) and through ASGI one by one elsewhere (``AsgiWire``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect

from locstream.serve import TRANSPORT_EXTENSION
from ws_edge import messages
from ws_edge.framing import payloads, text_frame
from ws_edge.outbox import Message, Update

MAX_BATCH_CHARS = 256 * 1024  # a v2 flush larger than this goes out as several location_batch frames
# Data larger than this is handed to the transport a piece at a time, as it drains: asyncio's transport copies what
# the socket does not take at once into a buffer of the connection's own, and a big tenant's initial_state (megabytes,
# shared by every client connecting meanwhile) would otherwise be copied once per connection that reads slowly.
WRITE_PIECE = 64 * 1024


def encode(taken: list[Message], batched: bool) -> bytes:
    """The frames to write for ``taken``, in order: v1 writes each update as its ``location_update`` frame; v2
    writes each run of updates as one ``location_batch`` (several past ``MAX_BATCH_CHARS``)."""
    if not batched:
        return b"".join(each.frame if isinstance(each, Update) else text_frame(each.encode()) for each in taken)
    out: list[bytes] = []
    run: list[Update] = []
    run_chars = 0
    for each in taken:
        if isinstance(each, Update):
            if run and run_chars + len(each.item) > MAX_BATCH_CHARS:
                out.append(text_frame(messages.location_batch(run).encode()))
                run, run_chars = [], 0
            run.append(each)
            run_chars += len(each.item) + 1
            continue
        if run:
            out.append(text_frame(messages.location_batch(run).encode()))
            run, run_chars = [], 0
        out.append(text_frame(each.encode()))
    if run:
        out.append(text_frame(messages.location_batch(run).encode()))
    return b"".join(out)


class RawWire:
    """Writes ``data`` (frames from ``encode``) to the transport of uvicorn's protocol
    (``locstream.serve.TransportWebSocketProtocol``), in the order of its own writes (handshake, pings, close);
    waits while the transport's buffer is above its high-water mark."""

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol

    def write_now(self, data: bytes | memoryview) -> bool:
        """Write without waiting; False when the transport's buffer is now above its high-water mark."""
        protocol = self._protocol
        if protocol.close_sent or protocol.disconnected:  # no data frame may follow a close frame
            raise WebSocketDisconnect(1006)
        protocol.transport.write(data)
        return bool(protocol.writable.is_set())

    async def write(self, data: bytes, progress: Callable[[], None] | None = None) -> None:
        """Write, then wait until the transport takes more (``WRITE_PIECE`` at a time; ``progress`` is called as each
        piece is taken). Raises ``WebSocketDisconnect`` when the client is gone or the connection is closing."""
        if len(data) <= WRITE_PIECE:
            if not self.write_now(data):
                await self.drained()
            return
        whole = memoryview(data)
        for at in range(0, len(whole), WRITE_PIECE):
            if not self.write_now(whole[at : at + WRITE_PIECE]):
                await self.drained()
            if progress is not None:
                progress()

    async def drained(self) -> None:
        protocol = self._protocol
        await protocol.writable.wait()
        if protocol.disconnected:
            raise WebSocketDisconnect(1006)

    def abort(self) -> None:
        """Drop the connection without a close handshake (a peer that does not read its close frame)."""
        self._protocol.transport.abort()


class AsgiWire:
    def __init__(self, websocket: WebSocket) -> None:
        self._websocket = websocket

    async def write(self, data: bytes, progress: Callable[[], None] | None = None) -> None:
        for payload in payloads(data):
            await self._websocket.send_text(payload.decode())

    async def drained(self) -> None:
        pass  # every send_text waited already

    def abort(self) -> None:
        pass  # ASGI has no way to drop a connection: the server's own close timeout does it


Wire = RawWire | AsgiWire


async def close_within(websocket: WebSocket, wire: Wire, code: int, reason: str, seconds: float) -> bool:
    """Send the close frame; False when the client was dropped instead. A stalled client's socket takes the
    close frame only once the client reads again (uvicorn waits for the socket to drain first): it gets
    ``seconds`` (the slow-consumer deadline), then the connection is dropped, so that a close decided by the edge
    always ends the connection whatever the client's reading state."""
    try:
        async with asyncio.timeout(seconds):
            await websocket.close(code=code, reason=reason[:120])
    except TimeoutError:
        wire.abort()
        return False
    except (RuntimeError, OSError, WebSocketDisconnect):
        pass  # gone already
    return True


def wire_of(websocket: WebSocket) -> Wire:
    extension = websocket.scope.get("extensions", {}).get(TRANSPORT_EXTENSION)
    return RawWire(extension["protocol"]) if extension else AsgiWire(websocket)
