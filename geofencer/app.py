"""The geofence processor's process: its loop runs in the app's lifespan; HTTP serves health and metrics."""

from __future__ import annotations

from fastapi import FastAPI

from geofencer.processor import Geofencer
from geofencer.settings import GeofencerSettings
from locstream.http import Operations, add_operations, service_app
from locstream.readiness import BrokerProbe


def create_app(settings: GeofencerSettings | None = None) -> FastAPI:
    settings = settings or GeofencerSettings()
    app = service_app("locstream geofence processor", settings, settings.auth)
    geofencer = Geofencer(settings)
    app.state.geofencer = geofencer
    probe = BrokerProbe(
        settings.kafka, positions=lambda: dict(geofencer.positions), stuck_after=settings.stuck_after_seconds
    )
    app.state.services = [geofencer, probe]

    def problems() -> list[str]:
        return probe.problems() + geofencer.problems()

    add_operations(
        app,
        Operations(problems, [geofencer.metrics.registry], geofencer.health, probe.details),
        settings.metrics,
    )
    return app
