"""The WebSocket edge process: ``create_app(settings)`` wires the feed, view and fan-out into FastAPI.

The live feed's connections are not ASGI's: ``locstream/serve.py`` hands their upgrade requests to the edge's
``Sessions`` (``ws_edge/sessions.py``, ``app.state.websocket_takeover``). Paced replays, on the same URL, go through
the route below.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from fastapi import APIRouter, FastAPI, Request, Response, WebSocket
from fastapi.middleware.cors import CORSMiddleware

from locstream.auth import TokenVerifier
from locstream.fences import FenceRegistry
from locstream.gc_tuning import tune_for_batches
from locstream.http import Claims, Operations, add_operations, require_role, service_app, token_verifier
from locstream.lifecycle import cancel_and_wait
from locstream.readiness import BrokerProbe
from locstream.work_slots import WorkSlots
from schemas.claims import VIEWER_ROLES, Role
from schemas.geofences import GeofenceDefined, fence_wire
from schemas.ws import CLOSE_INTERNAL_ERROR, CLOSE_SERVICE_RESTART, TechnicianLocation
from ws_edge import messages
from ws_edge.fanout import Fanout, SlowConsumerLimits
from ws_edge.live_feed import LiveFeed
from ws_edge.map_page import install as install_map_page
from ws_edge.metrics import EdgeMetrics
from ws_edge.replay_session import ReplaySession, is_replay
from ws_edge.sessions import Sessions
from ws_edge.settings import EdgeSettings
from ws_edge.view import LiveView

router = APIRouter(prefix="/api/v1/field-service")
SHUTDOWN_CLOSE_SECONDS = 3.0  # clients that have not answered their 1012 close by then are dropped


@dataclass
class Edge:
    """Everything one edge node owns; ``start()``/``stop()`` bracket its life."""

    settings: EdgeSettings
    view: LiveView
    fanout: Fanout
    feed: LiveFeed
    metrics: EdgeMetrics
    fences: FenceRegistry
    sessions: Sessions
    replay_slots: WorkSlots  # caps on paced replays, per tenant and for the node
    started_at: float = 0.0
    replays: set[ReplaySession] = field(default_factory=set)  # paced replays under way, each with its own consumer

    @classmethod
    def build(cls, settings: EdgeSettings, verifier: TokenVerifier) -> Edge:
        view = LiveView()
        limits = SlowConsumerLimits(settings.slow_consumer_bytes, settings.slow_consumer_seconds)
        fanout = Fanout(limits, settings.max_connections_per_tenant, settings.resume_buffer_size)
        feed = LiveFeed(settings, view, fanout)
        replays: set[ReplaySession] = set()
        fences = FenceRegistry(settings.kafka)
        metrics = EdgeMetrics(fanout, feed, replays.__len__)
        sessions = Sessions(settings, feed, fanout, view, verifier, fences.book, metrics.delivery_seconds)
        slots = WorkSlots("replays", settings.max_replays_per_tenant, settings.max_replays)
        edge = cls(settings, view, fanout, feed, metrics, fences, sessions, replays=replays, replay_slots=slots)
        fences.on_change = edge.fence_changed
        return edge

    def fence_changed(self, tenant_id: str, geofence_id: str, definition: GeofenceDefined | None) -> None:
        """A fence defined, redefined or removed: every map of its tenant hears of it."""
        if definition is None:
            frame = messages.geofence_removed(geofence_id)
        else:
            frame = messages.geofence_updated(fence_wire(definition))
        self.fanout.broadcast(tenant_id, frame)

    _sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.started_at = time.monotonic()
        tune_for_batches(self.settings.gc_gen0_threshold)
        await self.fences.start()
        await self.feed.start()
        self._sweeper = asyncio.create_task(self._sweep(), name="edge-sweeper")

    async def stop(self) -> None:
        for replay in list(self.replays):
            replay.close(CLOSE_SERVICE_RESTART, "edge shutting down")
        await self.sessions.close_all(
            CLOSE_SERVICE_RESTART, "edge shutting down: reconnect with your cursor", SHUTDOWN_CLOSE_SECONDS
        )
        await cancel_and_wait(self._sweeper)
        await self.feed.stop()
        await self.fences.stop()

    def problems(self) -> list[str]:
        return [] if self.feed.ready.is_set() else ["not bootstrapped yet"]

    def health(self) -> dict[str, object]:
        return {"ready": self.feed.ready.is_set()}

    async def _sweep(self) -> None:
        """Once a second: close clients behind past their limits even when nothing new comes for them."""
        while True:
            await asyncio.sleep(1.0)
            self.sessions.report_vanished()
            self.fanout.sweep()
            self.view.forget_encodings()
            self.sessions.initial_states.forget()
            self.fanout.wake()


def _edge(request_or_ws: Request | WebSocket) -> Edge:
    edge: Edge = request_or_ws.app.state.edge
    return edge


@router.websocket("/ws/technician-locations")
async def technician_locations(websocket: WebSocket) -> None:
    """Paced replays (``replay_from``...): the live feed's requests never get here under ``locstream.serve``."""
    edge = _edge(websocket)
    if not is_replay(websocket.query_params):  # served by another ASGI server: the live feed needs locstream's
        await websocket.close(code=CLOSE_INTERNAL_ERROR, reason="the live feed is served by locstream's own server")
        return
    replay = ReplaySession(websocket, edge.settings, token_verifier(websocket), edge.replay_slots)
    edge.replays.add(replay)
    try:
        await replay.run()
    finally:
        edge.replays.discard(replay)


@router.get(
    "/technicians/locations/active",
    tags=["map"],
    summary="Current positions (the polling fallback): the same list as initial_state",
    response_model=list[TechnicianLocation],
)
async def active_locations(request: Request, claims: Claims) -> Response:
    require_role(claims, VIEWER_ROLES, "view the map")
    return Response(_edge(request).view.locations_json(claims.tenant_id), media_type="application/json")


@router.get(
    "/ws/stats",
    tags=["map"],
    summary="This edge node's connection statistics: a dispatcher's or analyst's tenant, or the whole node for an "
    "admin",
    responses={401: {"description": "No valid token"}, 403: {"description": "Not a viewer role"}},
)
async def ws_stats(request: Request, claims: Claims) -> dict[str, object]:
    require_role(claims, VIEWER_ROLES, "read connection statistics")
    edge = _edge(request)
    uptime = round(time.monotonic() - edge.started_at, 1)
    if Role.ADMIN in claims.roles:
        return {
            "scope": "node",
            "active_connections": edge.fanout.connection_count(),
            "active_tenants": edge.view.tenant_count(),
            "messages_sent": edge.fanout.messages_sent,
            "conflated_updates": edge.fanout.conflated(),
            "slow_disconnects": edge.fanout.slow_disconnects,
            "tasks": len(asyncio.all_tasks()),  # the process's asyncio tasks: none per live-feed connection
            "uptime_seconds": uptime,
        }
    return {
        "scope": "tenant",
        "tenant_id": claims.tenant_id,
        **edge.fanout.tenant_figures(claims.tenant_id),
        "uptime_seconds": uptime,
    }


def install(app: FastAPI, settings: EdgeSettings) -> Edge:
    """Add the edge's routes to ``app``; the caller starts and stops the returned edge."""
    edge = Edge.build(settings, app.state.token_verifier)
    app.state.edge = edge
    app.state.websocket_takeover = edge.sessions  # locstream/serve.py hands it the live feed's upgrades
    app.include_router(router)
    install_map_page(app)
    if settings.allowed_origins:  # a map on a listed origin polls /locations/active with its bearer token
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.allowed_origins,
            allow_methods=["GET"],
            allow_headers=["Authorization"],
        )
    return edge


def create_app(settings: EdgeSettings | None = None) -> FastAPI:
    settings = settings or EdgeSettings()
    app = service_app("locstream WebSocket edge", settings, settings.auth)
    edge = install(app, settings)

    def positions() -> dict[int, int]:
        return {partition: applied + 1 for partition, applied in edge.feed.applied.items()}

    probe = BrokerProbe(settings.kafka, positions=positions, stuck_after=settings.stuck_after_seconds)
    app.state.services = [edge, probe]
    add_operations(app, operations(edge, probe), settings.metrics)
    return app


def operations(edge: Edge, probe: BrokerProbe) -> Operations:
    """Ready: bootstrapped and caught up with the topic, the broker answers, the consumer is not stuck."""
    return Operations(lambda: edge.problems() + probe.problems(), [edge.metrics.registry], edge.health, probe.details)
