"""The ingest API process: ``create_app(settings)`` wires the publisher into a FastAPI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from locstream.http import prepare_app
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

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await publisher.start()
        try:
            yield
        finally:
            await publisher.stop()

    app = FastAPI(title="locstream ingest API", lifespan=lifespan)
    prepare_app(app, settings.auth)
    publisher = install(app, settings)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
