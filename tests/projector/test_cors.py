"""The projector answers a browser on another origin (the dispatch map's trails and exports) only when that origin is
listed in ``LOCSTREAM_PROJECTOR_ALLOWED_ORIGINS``; the app is exercised in process, without its lifespan (CORS is
answered before any route, and the routes refuse a missing token before they read anything)."""

from __future__ import annotations

from pathlib import Path

import httpx

from locstream.settings import AuthSettings, DataSettings, KafkaSettings
from projector.app import create_app
from projector.settings import ProjectorSettings
from tests.support.cors import assert_listed_origin_may_read_with_its_token, assert_no_grant, preflight

MAP = "http://map.example:8003"
HISTORY = "/api/v1/field-service/technicians/tech-ada/location-history"


def _client(tmp_path: Path, origins: list[str]) -> httpx.AsyncClient:
    settings = ProjectorSettings(
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"),
        data=DataSettings(data_dir=tmp_path),
        auth=AuthSettings(jwt_secret="s" * 32),
        allowed_origins=origins,
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(settings)), base_url="http://projector")


async def test_a_listed_origin_may_send_its_bearer_token_and_read_the_answer(tmp_path: Path) -> None:
    async with _client(tmp_path, [MAP]) as client:
        await assert_listed_origin_may_read_with_its_token(client, HISTORY, MAP)


async def test_another_origin_or_no_list_gets_no_cors_headers(tmp_path: Path) -> None:
    async with _client(tmp_path, [MAP]) as client:
        await assert_no_grant(client, HISTORY, "http://evil.example")
        write = await client.options(HISTORY, headers=preflight(MAP, method="DELETE"))
        assert write.status_code == 400  # GET only
    async with _client(tmp_path, []) as client:
        await assert_no_grant(client, HISTORY, MAP)
