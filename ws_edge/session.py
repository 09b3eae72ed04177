"""One dispatcher connection, from the auth handshake to its close.

Order on the wire: ``connected``, ``initial_state``, then every ``location_update`` of the tenant.
Subscribing and taking the snapshot happen in one step with no await between them, and the live feed
applies and publishes in one step too, so every change is either in initial_state or queued after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from fastapi import WebSocket, WebSocketDisconnect

from schemas.ws import CLOSE_INTERNAL_ERROR, CLOSE_UNSUPPORTED_DATA, PING_TEXT
from ws_edge import frames
from ws_edge.auth_handshake import authenticate
from ws_edge.fanout import Fanout, Subscriber
from ws_edge.live_feed import LiveFeed
from ws_edge.settings import EdgeSettings
from ws_edge.view import LiveView

log = logging.getLogger(__name__)


class ClientSession:
    def __init__(
        self, websocket: WebSocket, settings: EdgeSettings, feed: LiveFeed, fanout: Fanout, view: LiveView
    ) -> None:
        self.websocket = websocket
        self.settings = settings
        self.feed = feed
        self.fanout = fanout
        self.view = view
        self.connection_id = str(uuid.uuid4())

    async def run(self) -> None:
        """Serve the connection until the client leaves or must be closed; a client vanishing is not an error."""
        with contextlib.suppress(WebSocketDisconnect):
            await self._run()

    async def _run(self) -> None:
        claims = await authenticate(self.websocket, self.settings.auth)
        if claims is None:
            return
        tenant_id = claims.tenant_id
        await self.websocket.send_text(frames.connected(self.connection_id, tenant_id))
        try:
            await asyncio.wait_for(self.feed.ready.wait(), self.settings.bootstrap_timeout_seconds)
        except TimeoutError:
            await self.websocket.close(code=CLOSE_INTERNAL_ERROR, reason="edge not caught up with the topic")
            return
        with self.fanout.subscribe(tenant_id) as subscriber:
            await self.websocket.send_text(frames.initial_state(self.view.locations(tenant_id)))
            log.info("connection %s of tenant %s subscribed", self.connection_id, tenant_id)
            await self._pump(subscriber)

    async def _pump(self, subscriber: Subscriber) -> None:
        """Write queued frames and read pings until either side ends the connection."""
        writer = asyncio.create_task(self._write(subscriber), name=f"ws-write-{self.connection_id}")
        reader = asyncio.create_task(self._read(subscriber), name=f"ws-read-{self.connection_id}")
        closing = asyncio.create_task(subscriber.closing.wait())
        try:
            await asyncio.wait({writer, reader, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (writer, reader, closing):
                task.cancel()
            for task in (writer, reader, closing):
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError, OSError):
                    await task
        if subscriber.close_code is not None:
            with contextlib.suppress(RuntimeError, OSError):
                await self.websocket.close(code=subscriber.close_code)
        log.info("connection %s closed (code %s)", self.connection_id, subscriber.close_code)

    async def _write(self, subscriber: Subscriber) -> None:
        while True:
            text = await subscriber.queue.get()
            await self.websocket.send_text(text)

    async def _read(self, subscriber: Subscriber) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:  # a binary frame: the protocol is JSON text only
                subscriber.close(CLOSE_UNSUPPORTED_DATA)
                return
            if text.strip() == PING_TEXT:
                subscriber.offer(frames.PONG)
