"""Frames on the wire: what a writer takes, encoded as WebSocket frames, and written to the client's socket.

A server's frames are not masked, so a frame's bytes are the same for every client that gets it: a
``location_update`` is framed once per tenant (``Update.frame``), and a run of the tenant's stream that many
clients take alike is encoded once for all of them (``TenantUpdates.encoded``). Writing is then one
``transport.write`` per client and take, whatever the number of frames in it, when the edge runs under
``locstream.serve`` (``RawWire``); under another server, the frames go through ASGI one by one (``AsgiWire``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect

from locstream.serve import TRANSPORT_EXTENSION
from ws_edge import frames
from ws_edge.frames import text_frame
from ws_edge.outbox import Frame, Update

MAX_BATCH_CHARS = 256 * 1024  # a v2 flush larger than this goes out as several location_batch frames


def payloads(data: bytes) -> Iterator[bytes]:
    """The payloads of the frames ``frames.text_frame`` wrote one after another into ``data``."""
    at = 0
    while at < len(data):
        size, header = data[at + 1], 2
        if size == 126:
            size, header = struct.unpack_from("!H", data, at + 2)[0], 4
        elif size == 127:
            size, header = struct.unpack_from("!Q", data, at + 2)[0], 10
        yield data[at + header : at + header + size]
        at += header + size


def encode(taken: list[Frame], batched: bool) -> bytes:
    """The frames to write for ``taken``, in order: v1 writes each update as its ``location_update`` frame; v2
    writes each run of updates as one ``location_batch`` (several past ``MAX_BATCH_CHARS``)."""
    if not batched:
        return b"".join(frame.frame if isinstance(frame, Update) else text_frame(frame.encode()) for frame in taken)
    out: list[bytes] = []
    run: list[Update] = []
    run_chars = 0
    for frame in taken:
        if isinstance(frame, Update):
            if run and run_chars + len(frame.item) > MAX_BATCH_CHARS:
                out.append(text_frame(frames.location_batch(run).encode()))
                run, run_chars = [], 0
            run.append(frame)
            run_chars += len(frame.item) + 1
            continue
        if run:
            out.append(text_frame(frames.location_batch(run).encode()))
            run, run_chars = [], 0
        out.append(text_frame(frame.encode()))
    if run:
        out.append(text_frame(frames.location_batch(run).encode()))
    return b"".join(out)


class RawWire:
    """Writes ``data`` (frames from ``encode``) to the transport of uvicorn's protocol
    (``locstream.serve.TransportWebSocketProtocol``), in the order of its own writes (handshake, pings, close);
    waits while the transport's buffer is above its high-water mark."""

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol

    def write_now(self, data: bytes) -> bool:
        """Write without waiting; False when the transport's buffer is now above its high-water mark."""
        protocol = self._protocol
        if protocol.close_sent or protocol.disconnected:  # no data frame may follow a close frame
            raise WebSocketDisconnect(1006)
        protocol.transport.write(data)
        return bool(protocol.writable.is_set())

    async def write(self, data: bytes) -> None:
        """Write, then wait until the transport takes more. Raises ``WebSocketDisconnect`` when the client is gone
        or the connection is closing."""
        if not self.write_now(data):
            await self.drained()

    async def drained(self) -> None:
        protocol = self._protocol
        await protocol.writable.wait()
        if protocol.disconnected:
            raise WebSocketDisconnect(1006)


class AsgiWire:
    def __init__(self, websocket: WebSocket) -> None:
        self._websocket = websocket

    async def write(self, data: bytes) -> None:
        for payload in payloads(data):
            await self._websocket.send_text(payload.decode())

    async def drained(self) -> None:
        pass  # every send_text waited already


Wire = RawWire | AsgiWire


def wire_of(websocket: WebSocket) -> Wire:
    extension = websocket.scope.get("extensions", {}).get(TRANSPORT_EXTENSION)
    return RawWire(extension["protocol"]) if extension else AsgiWire(websocket)
