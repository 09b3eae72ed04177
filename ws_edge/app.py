"""The WebSocket edge process: ``create_app(settings)`` wires the feed, view and fan-out into FastAPI."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

from fastapi import APIRouter, FastAPI, HTTPException, Request, Response, WebSocket, status

from locstream.http import Claims, service_app
from schemas.claims import VIEWER_ROLES
from schemas.ws import CLOSE_SERVICE_RESTART, TechnicianLocation
from ws_edge import frames
from ws_edge.fanout import Fanout
from ws_edge.live_feed import LiveFeed
from ws_edge.session import ClientSession
from ws_edge.settings import EdgeSettings
from ws_edge.view import LiveView

router = APIRouter(prefix="/api/v1/field-service")


@dataclass
class Edge:
    """Everything one edge node owns; ``start()``/``stop()`` bracket its life."""

    settings: EdgeSettings
    view: LiveView
    fanout: Fanout
    feed: LiveFeed
    started_at: float = 0.0

    @classmethod
    def build(cls, settings: EdgeSettings) -> Edge:
        view = LiveView(stale_after=timedelta(seconds=settings.stale_after_seconds))
        fanout = Fanout(settings.client_queue_size)
        return cls(settings, view, fanout, LiveFeed(settings, view, fanout))

    async def start(self) -> None:
        self.started_at = time.monotonic()
        await self.feed.start()

    async def stop(self) -> None:
        self.fanout.close_all(CLOSE_SERVICE_RESTART)  # clients reconnect elsewhere
        await self.feed.stop()


def _edge(request_or_ws: Request | WebSocket) -> Edge:
    edge: Edge = request_or_ws.app.state.edge
    return edge


@router.websocket("/ws/technician-locations")
async def technician_locations(websocket: WebSocket) -> None:
    edge = _edge(websocket)
    await ClientSession(websocket, edge.settings, edge.feed, edge.fanout, edge.view).run()


@router.get(
    "/technicians/locations/active",
    tags=["map"],
    summary="Current positions (the polling fallback): the same list as initial_state",
    response_model=list[TechnicianLocation],
)
async def active_locations(request: Request, claims: Claims) -> Response:
    if claims.role not in VIEWER_ROLES:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"role {claims.role.value} may not view the map")
    return Response(frames.encode_list(_edge(request).view.locations(claims.tenant_id)), media_type="application/json")


@router.get("/ws/stats", tags=["map"], summary="This edge node's connection statistics")
async def ws_stats(request: Request) -> dict[str, object]:
    edge = _edge(request)
    return {
        "active_connections": edge.fanout.connection_count(),
        "active_tenants": edge.view.tenant_count(),
        "messages_sent": edge.fanout.messages_sent,
        "uptime_seconds": round(time.monotonic() - edge.started_at, 1),
    }


def install(app: FastAPI, settings: EdgeSettings) -> Edge:
    """Add the edge's routes to ``app``; the caller starts and stops the returned edge."""
    edge = Edge.build(settings)
    app.state.edge = edge
    app.include_router(router)
    return edge


def create_app(settings: EdgeSettings | None = None) -> FastAPI:
    settings = settings or EdgeSettings()
    app = service_app("locstream WebSocket edge", settings, settings.auth)
    edge = install(app, settings)
    app.state.services = [edge]

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, object]:
        return {"status": "ok", "ready": edge.feed.ready.is_set()}

    return app
