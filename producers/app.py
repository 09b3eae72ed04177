"""The ingest API process: ``create_app(settings)`` wires the publisher into a FastAPI app."""

from __future__ import annotations

from fastapi import FastAPI

from locstream.http import service_app
from producers.publisher import EventPublisher
from producers.routes import router
from producers.settings import ProducersSettings


def install(app: FastAPI, settings: ProducersSettings) -> EventPublisher:
    """Add the ingest routes to ``app``; the caller starts and stops the returned publisher."""
    publisher = EventPublisher(settings)
    app.state.publisher = publisher
    app.include_router(router)
    return publisher


def create_app(settings: ProducersSettings | None = None) -> FastAPI:
    settings = settings or ProducersSettings()
    app = service_app("locstream ingest API", settings, settings.auth)
    app.state.services = [install(app, settings)]

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
