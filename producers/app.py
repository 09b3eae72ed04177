"""The ingest API process: ``create_app(settings)`` wires the publisher into a FastAPI app."""

from __future__ import annotations

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from locstream.http import readiness_response, service_app
from locstream.readiness import BrokerProbe
from producers.hot_path import HotPath
from producers.openapi import document
from producers.routes import Ingest, router
from producers.settings import ProducersSettings


def install(app: FastAPI, settings: ProducersSettings) -> Ingest:
    """Add the ingest routes to ``app``; the caller starts and stops the returned ingest state."""
    ingest = Ingest(settings)
    app.state.ingest = ingest
    app.include_router(router)
    app.add_middleware(HotPath)
    document(app)
    return ingest


def create_app(settings: ProducersSettings | None = None) -> FastAPI:
    settings = settings or ProducersSettings()
    app = service_app("locstream ingest API", settings, settings.auth)
    ingest = install(app, settings)
    probe = BrokerProbe(settings.kafka)
    app.state.services = [ingest, probe]

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        """The broker answers (``locstream/readiness.py``)."""
        return readiness_response(probe.problems())

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(ingest.publisher.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
