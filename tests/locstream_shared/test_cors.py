"""A browser on another origin may read a service's GET endpoints only when the service lists that origin: the
projector's history and exports (``LOCSTREAM_PROJECTOR_ALLOWED_ORIGINS``, the map's trails) and the edge's polling
fallback (``LOCSTREAM_EDGE_ALLOWED_ORIGINS``, the list its WebSocket feed takes too). Each app is exercised in
process, without its lifespan: CORS is answered before any route, and the routes refuse a missing token before they
read anything."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from locstream.settings import AuthSettings, DataSettings, KafkaSettings
from projector.app import create_app as projector_app
from projector.settings import ProjectorSettings
from ws_edge.app import create_app as edge_app
from ws_edge.settings import EdgeSettings

MAP = "https://dispatch.example"
SERVICES: dict[str, tuple[Callable[[Any], FastAPI], type[Any], str]] = {
    "projector history": (
        projector_app,
        ProjectorSettings,
        "/api/v1/field-service/technicians/tech-ada/location-history",
    ),
    "edge polling": (edge_app, EdgeSettings, "/api/v1/field-service/technicians/locations/active"),
}


def _client(service: str, tmp_path: Path, origins: list[str]) -> tuple[httpx.AsyncClient, str]:
    create_app, settings, path = SERVICES[service]
    app = create_app(
        settings(
            kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"),
            data=DataSettings(data_dir=tmp_path),
            auth=AuthSettings(jwt_secret="s" * 32),
            allowed_origins=origins,
        )
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service"), path


def _preflight(origin: str, method: str = "GET") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization",
    }


@pytest.mark.parametrize("service", SERVICES)
async def test_a_listed_origin_may_send_its_bearer_token_and_read_the_answer(service: str, tmp_path: Path) -> None:
    client, path = _client(service, tmp_path, [MAP])
    async with client:
        allowed = await client.options(path, headers=_preflight(MAP))
        assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == MAP
        assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
        refused = await client.get(path, headers={"Origin": MAP})  # no token: 401, readable by the page
        assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == MAP
        write = await client.options(path, headers=_preflight(MAP, method="DELETE"))
        assert write.status_code == 400  # GET only


@pytest.mark.parametrize("service", SERVICES)
async def test_another_origin_or_no_list_gets_no_cors_grant(service: str, tmp_path: Path) -> None:
    for origins, origin in (([MAP], "https://evil.example"), ([], MAP)):  # nothing listed: same-origin only
        client, path = _client(service, tmp_path, origins)
        async with client:
            asked = await client.options(path, headers=_preflight(origin))
            assert "access-control-allow-origin" not in asked.headers
            answer = await client.get(path, headers={"Origin": origin})
            assert answer.status_code == 401 and "access-control-allow-origin" not in answer.headers
