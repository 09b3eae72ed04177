"""The ingest API process: ``create_app(settings)`` wires the publisher into a FastAPI app."""

from __future__ import annotations

from fastapi import FastAPI

from locstream.http import Operations, add_operations, service_app
from locstream.readiness import BrokerProbe
from producers.alert_rule_routes import alert_rules_router
from producers.device_routes import devices_router, protocols_router
from producers.geofence_routes import geofences_router
from producers.hot_path import HotPath
from producers.openapi import document
from producers.routes import Ingest, router
from producers.rules_routes import rules_router
from producers.settings import ProducersSettings
from producers.webhook_endpoint_routes import webhook_endpoints_router


def install(app: FastAPI, settings: ProducersSettings) -> Ingest:
    """Add the ingest routes to ``app``; the caller starts and stops the returned ingest state."""
    ingest = Ingest(settings)
    app.state.ingest = ingest
    app.include_router(router)
    app.include_router(devices_router)
    app.include_router(geofences_router)
    app.include_router(rules_router)
    app.include_router(alert_rules_router)
    app.include_router(webhook_endpoints_router)
    app.include_router(protocols_router)
    app.add_middleware(HotPath)
    document(app)
    return ingest


def create_app(settings: ProducersSettings | None = None) -> FastAPI:
    settings = settings or ProducersSettings()
    app = service_app("locstream ingest API", settings, settings.auth)
    ingest = install(app, settings)
    probe = BrokerProbe(settings.kafka)  # ready: the broker answers (``locstream/readiness.py``)
    app.state.services = [ingest, probe]
    add_operations(
        app,
        Operations(probe.problems, [ingest.publisher.metrics.registry], readiness_details=probe.details),
        settings.metrics,
    )
    return app
