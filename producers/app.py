"""The ingest API process: ``create_app(settings)`` wires the publisher into a FastAPI app."""

from __future__ import annotations

from fastapi import FastAPI

from locstream.http import service_app
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
    app.state.services = [install(app, settings)]

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
