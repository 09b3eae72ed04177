"""The projector process: its loop runs in the app's lifespan; HTTP serves only health."""

from __future__ import annotations

from fastapi import FastAPI

from locstream.http import service_app
from projector.runner import Projector
from projector.settings import ProjectorSettings


def create_app(settings: ProjectorSettings | None = None) -> FastAPI:
    settings = settings or ProjectorSettings()
    projector = Projector(settings)
    app = service_app("locstream projector", settings)
    app.state.projector = projector
    app.state.services = [projector]

    @app.get("/healthz")
    async def healthz() -> dict[str, object]:
        return {"status": "ok", "applied": projector.applied, "skipped": projector.skipped}

    return app
