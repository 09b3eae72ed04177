"""Peer 1: the seed's design (the FastAPI live-location feature that locstream replaces), reproduced faithfully.

What the seed does, and so what this does:

- ``POST .../technicians/{id}/location`` updates the technician's current position in the database and commits
  (here SQLite through aiosqlite, one row per (tenant, technician)), *then* awaits
  ``ws_manager.broadcast_to_tenant(...)`` before it answers: the 202 waits for the whole fan-out.
- ``TechnicianLocationWebSocketManager`` is the seed's ``websocket_manager.py``: an in-process
  ``active_connections: dict[tenant_id, dict[connection_id, WebSocket]]`` with ``connect``, ``disconnect``,
  ``broadcast_to_tenant`` (a loop of ``await websocket.send_json(message)``, one socket after the other, each
  message serialized per socket by Starlette, failing sockets removed afterwards) and
  ``get_active_connection_count``.
- ``WS .../ws/technician-locations?token=`` registers the socket, sends ``connected``, reads ``initial_state`` from
  the database for this connection, then loops on ``receive_text`` answering ``ping`` with ``pong``.

No Kafka, one process: what the seed runs. The only departures are the interface the benchmark needs: tokens are
verified by locstream's ``TokenVerifier`` with its role rules, a bad token is accepted-then-closed with 1008 (as
locstream does) rather than refused before the upgrade, and ``last_update`` is the posted ``recorded_at`` with a
trailing ``Z`` (the seed wrote ``isoformat()`` of its server time).

Run: ``LOCSTREAM_JWT_SECRET=<32+ bytes> python -m bench.peers.seed --host 127.0.0.1 --port P --db /tmp/seed.db``
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from bench.peers._common import (
    WS_PATH,
    accept_viewer,
    parser,
    peer_app,
    serve,
)

log = logging.getLogger("bench.peers.seed")


class TechnicianLocationWebSocketManager:
    """The seed's connection manager: tenant-scoped sockets held in this process."""

    def __init__(self) -> None:
        self.active_connections: dict[str, dict[str, WebSocket]] = {}

    async def connect(self, websocket: WebSocket, tenant_id: str, connection_id: str) -> None:
        # The seed accepts here; the socket is already accepted by the auth handshake (see the module docstring).
        self.active_connections.setdefault(tenant_id, {})[connection_id] = websocket
        log.debug("connected: tenant=%s connection=%s", tenant_id, connection_id)

    def disconnect(self, connection_id: str) -> None:
        for tenant_id, connections in list(self.active_connections.items()):
            if connections.pop(connection_id, None) is not None:
                if not connections:
                    del self.active_connections[tenant_id]
                return

    async def broadcast_to_tenant(self, tenant_id: str, message: dict[str, Any]) -> None:
        disconnected: list[str] = []
        for connection_id, websocket in list(self.active_connections.get(tenant_id, {}).items()):
            try:
                await websocket.send_json(message)
            except Exception:  # the seed drops any socket that fails, whatever the reason
                disconnected.append(connection_id)
        for connection_id in disconnected:
            self.disconnect(connection_id)

    def get_active_connection_count(self, tenant_id: str | None = None) -> int:
        if tenant_id is not None:
            return len(self.active_connections.get(tenant_id, {}))
        return sum(len(connections) for connections in self.active_connections.values())


def create_app(db_path: Path) -> FastAPI:
    ws_manager = TechnicianLocationWebSocketManager()

    async def publish(tenant_id: str, location: dict[str, Any]) -> None:
        await ws_manager.broadcast_to_tenant(tenant_id, {"type": "location_update", "data": location})

    peer = peer_app("seed peer", db_path, publish)
    app, auth = peer.app, peer.auth

    @app.websocket(WS_PATH)
    async def websocket_technician_locations(websocket: WebSocket) -> None:
        claims = await accept_viewer(websocket, auth)
        if claims is None:
            return
        tenant_id, connection_id = claims.tenant_id, str(uuid.uuid4())
        await ws_manager.connect(websocket, tenant_id, connection_id)
        try:
            await websocket.send_json({"type": "connected", "connection_id": connection_id, "tenant_id": tenant_id})
            locations = await peer.store.tenant_locations(tenant_id)
            await websocket.send_json({"type": "initial_state", "data": locations})
            while True:
                data = await websocket.receive_text()
                if data == "ping":
                    await websocket.send_json({"type": "pong"})
        except WebSocketDisconnect:
            pass
        finally:
            ws_manager.disconnect(connection_id)

    return app


def main() -> None:
    args = parser("The seed's design: FastAPI + database + in-process WebSocket manager.").parse_args()
    serve(create_app(args.db), args.host, args.port)


if __name__ == "__main__":
    main()
