"""The edge's polling fallback answers a browser on another origin only when that origin is in
``LOCSTREAM_EDGE_ALLOWED_ORIGINS`` (the list its WebSocket feed takes too); the app is exercised in process, without
its lifespan (CORS is answered before any route, and the route refuses a missing token before it reads anything)."""

from __future__ import annotations

from pathlib import Path

import httpx

from locstream.settings import AuthSettings, DataSettings, KafkaSettings
from ws_edge.app import create_app
from ws_edge.settings import EdgeSettings

MAP = "https://dispatch.example"
ACTIVE = "/api/v1/field-service/technicians/locations/active"


def _client(tmp_path: Path, origins: list[str]) -> httpx.AsyncClient:
    settings = EdgeSettings(
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"),
        data=DataSettings(data_dir=tmp_path),
        auth=AuthSettings(jwt_secret="s" * 32),
        allowed_origins=origins,
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(settings)), base_url="http://edge")


def _preflight(origin: str) -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}


async def test_a_listed_origin_may_poll_with_its_bearer_token(tmp_path: Path) -> None:
    async with _client(tmp_path, [MAP]) as client:
        preflight = await client.options(ACTIVE, headers=_preflight(MAP))
        assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == MAP
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        refused = await client.get(ACTIVE, headers={"Origin": MAP})  # no token: 401, readable by the page
        assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == MAP


async def test_an_unlisted_origin_gets_no_cors_grant(tmp_path: Path) -> None:
    async with _client(tmp_path, [MAP]) as client:
        preflight = await client.options(ACTIVE, headers=_preflight("https://evil.example"))
        assert "access-control-allow-origin" not in preflight.headers
        answer = await client.get(ACTIVE, headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in answer.headers
    async with _client(tmp_path, []) as client:  # nothing listed: same-origin only
        preflight = await client.options(ACTIVE, headers=_preflight(MAP))
        assert "access-control-allow-origin" not in preflight.headers
