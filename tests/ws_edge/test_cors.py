"""The edge's polling fallback answers a browser on another origin only when that origin is in
``LOCSTREAM_EDGE_ALLOWED_ORIGINS`` (the list its WebSocket feed takes too); the app is exercised in process, without
its lifespan (CORS is answered before any route, and the route refuses a missing token before it reads anything)."""

from __future__ import annotations

from pathlib import Path

import httpx

from locstream.settings import AuthSettings, DataSettings, KafkaSettings
from tests.support.cors import assert_listed_origin_may_read_with_its_token, assert_no_grant
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


async def test_a_listed_origin_may_poll_with_its_bearer_token(tmp_path: Path) -> None:
    async with _client(tmp_path, [MAP]) as client:
        await assert_listed_origin_may_read_with_its_token(client, ACTIVE, MAP)


async def test_an_unlisted_origin_gets_no_cors_grant(tmp_path: Path) -> None:
    async with _client(tmp_path, [MAP]) as client:
        await assert_no_grant(client, ACTIVE, "https://evil.example")
    async with _client(tmp_path, []) as client:  # nothing listed: same-origin only
        await assert_no_grant(client, ACTIVE, MAP)
