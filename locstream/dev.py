"""``locstream dev``: the local broker plus all three services on one port, and a simulated fleet.

The services keep their own settings and lifecycles; dev only composes them in one process so that the
seed's URLs work unchanged on 127.0.0.1:8000. Production runs them as separate processes.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI

from locstream.http import service_app
from locstream.lifecycle import Service
from locstream.simulate import FleetSimulator
from producers.app import install as install_producers
from producers.settings import ProducersSettings
from projector.app import install as install_projector
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
    projector = install_projector(app, ProjectorSettings())
    services: list[Service] = [ingest, projector, edge]
    if options.simulate:
        services.append(FleetSimulator(f"http://{options.host}:{options.port}", producers_settings.auth))
    app.state.services = services

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, object]:
        return {"status": "ok", "ready": edge.feed.ready.is_set()}

    return app
