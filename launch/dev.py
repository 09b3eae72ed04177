"""``locstream dev``: the local broker plus all the services on one port (the geofence processor too), and a
simulated fleet.

The services keep their own settings and lifecycles; dev only composes them in one process so that the
seed's URLs work unchanged on 127.0.0.1:8000. Production runs them as separate processes.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI

from geofencer.processor import Geofencer
from geofencer.settings import GeofencerSettings
from launch.simulate import FleetSimulator
from locstream.http import Operations, add_operations, service_app
from locstream.lifecycle import Service
from locstream.readiness import BrokerProbe
from producers.app import install as install_producers
from producers.settings import ProducersSettings
from projector.app import install as install_projector
from projector.app import operations as projector_ops
from projector.settings import ProjectorSettings
from ws_edge.app import install as install_edge
from ws_edge.settings import EdgeSettings


@dataclass(frozen=True)
class DevOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    simulate: bool = True


def create_dev_app(options: DevOptions) -> FastAPI:
    producers_settings = ProducersSettings()
    app = service_app(
        "locstream (dev: ingest API, projector and WebSocket edge in one process)", options, producers_settings.auth
    )
    ingest = install_producers(app, producers_settings)
    edge = install_edge(app, EdgeSettings())
    # Order matters: ingest creates the topic, the projector creates the table, the edge bootstraps from it.
    projector_settings = ProjectorSettings()
    projector = install_projector(app, projector_settings)
    # One probe of the broker, watching the projector's consumer for the stuck-consumer canary.
    probe = BrokerProbe(
        projector_settings.kafka, positions=projector.positions, stuck_after=projector_settings.stuck_after_seconds
    )
    geofencer = Geofencer(GeofencerSettings())  # crossings of the fences defined through the API
    services: list[Service] = [ingest, projector, app.state.fences, edge, geofencer, probe]
    if options.simulate:
        services.append(FleetSimulator(f"http://{options.host}:{options.port}", producers_settings.auth))
    app.state.services = services
    # The three services' operations as one: ready when all three are, every metric on one /metrics.
    projector_operations = projector_ops(projector, probe)
    add_operations(
        app,
        Operations(
            problems=lambda: projector_operations.problems() + edge.problems(),
            registries=[
                ingest.publisher.metrics.registry,
                projector.metrics.registry,
                edge.metrics.registry,
                geofencer.metrics.registry,
            ],
            health=edge.health,
            readiness_details=projector_operations.readiness_details,
        ),
        producers_settings.metrics,
    )
    return app
