"""The projector process: its loop runs in the app's lifespan; HTTP serves health, metrics and history."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from locstream.fences import FenceRegistry
from locstream.http import Operations, add_operations, service_app
from locstream.readiness import BrokerProbe
from locstream.work_slots import WorkSlots
from projector.reports import router as reports_router
from projector.routes import router
from projector.runner import Projector
from projector.settings import ProjectorSettings
from replay.routes import install as install_history_export


def install(app: FastAPI, settings: ProjectorSettings) -> Projector:
    """Add the history and report routes (and the history export, ``replay/routes.py``) to ``app``; the caller
    starts and stops the returned projector."""
    projector = Projector(settings)
    app.state.projector = projector
    app.state.projection_store = projector.store
    app.state.fences = FenceRegistry(settings.kafka)  # started by the caller, with the projector
    app.include_router(router)
    app.include_router(reports_router)
    install_history_export(
        app, settings.kafka, WorkSlots("exports", settings.max_exports_per_tenant, settings.max_exports)
    )
    if settings.allowed_origins:  # the map on another origin fetches trails and exports with its bearer token
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.allowed_origins,
            allow_methods=["GET"],
            allow_headers=["Authorization"],
            expose_headers=["Content-Disposition", "X-Locstream-Offsets"],
        )
    return projector


def create_app(settings: ProjectorSettings | None = None) -> FastAPI:
    settings = settings or ProjectorSettings()
    app = service_app("locstream projector", settings, settings.auth)
    projector = install(app, settings)
    probe = BrokerProbe(settings.kafka, positions=projector.positions, stuck_after=settings.stuck_after_seconds)
    app.state.services = [projector, app.state.fences, probe]
    add_operations(app, operations(projector, probe), settings.metrics)
    return app


def operations(projector: Projector, probe: BrokerProbe) -> Operations:
    """Ready: partitions assigned, no partition lagging more than the threshold, the broker answers and the consumer
    is not stuck (``locstream/readiness.py``); healthy with how much it has done."""

    def problems() -> list[str]:
        ready, reason = projector.ready()
        return probe.problems() if ready else [reason]

    def health() -> dict[str, object]:
        return {"applied": projector.applied, "duplicates": projector.duplicates, "dead_lettered": projector.skipped}

    return Operations(
        problems, [projector.metrics.registry], health, lambda: {"lag": projector.lag(), **probe.details()}
    )
