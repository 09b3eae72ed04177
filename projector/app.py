"""The projector process: its loop runs in the app's lifespan; HTTP serves only health."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from projector.runner import Projector
from projector.settings import ProjectorSettings


def create_app(settings: ProjectorSettings | None = None) -> FastAPI:
    settings = settings or ProjectorSettings()
    projector = Projector(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await projector.start()
        try:
            yield
        finally:
            await projector.stop()

    app = FastAPI(title="locstream projector", lifespan=lifespan)
    app.state.projector = projector

    @app.get("/healthz")
    async def healthz() -> dict[str, object]:
        return {"status": "ok", "applied": projector.applied, "skipped": projector.skipped}

    return app
