"""The projector process: its loop runs in the app's lifespan; HTTP serves health, metrics and history."""

from __future__ import annotations

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from locstream.http import readiness_response, service_app
from locstream.readiness import BrokerProbe
from projector.routes import router
from projector.runner import Projector
from projector.settings import ProjectorSettings
from replay.routes import install as install_history_export


def install(app: FastAPI, settings: ProjectorSettings) -> Projector:
    """Add the history routes (and the history export, ``replay/routes.py``) to ``app``; the caller starts and
    stops the returned projector."""
    projector = Projector(settings)
    app.state.projector = projector
    app.state.projection_store = projector.store
    app.include_router(router)
    install_history_export(app, settings.kafka)
    return projector


def create_app(settings: ProjectorSettings | None = None) -> FastAPI:
    settings = settings or ProjectorSettings()
    app = service_app("locstream projector", settings, settings.auth)
    projector = install(app, settings)
    probe = BrokerProbe(settings.kafka, positions=projector.positions, stuck_after=settings.stuck_after_seconds)
    app.state.services = [projector, probe]

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, object]:
        """The process is up (and how much it has done)."""
        return {
            "status": "ok", "applied": projector.applied, "duplicates": projector.duplicates,
            "dead_lettered": projector.skipped,
        }  # fmt: skip

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        """Partitions are assigned, no partition lags more than the configured threshold, the broker answers and
        the consumer is not stuck (``locstream/readiness.py``)."""
        ready, reason = projector.ready()
        return readiness_response(probe.problems() if ready else [reason], lag=projector.lag())

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(projector.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
