"""An identity provider whose JWKS is down, slow, garbage or empty, under the real services: every token is
refused (401 with the reason, WebSocket close 1008) within the fetch deadline, none is a 5xx or a hung
connection, nothing reaches Kafka; once the JWKS answers again, tokens are taken without a restart."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from schemas.claims import Role
from tests.support.jwks_provider import Mode
from tests.support.kafka_io import end_offsets
from tests.support.maps import WS_PATH
from tests.support.stack import Stack, eventually

pytestmark = [pytest.mark.integration, pytest.mark.serial]


def _batch() -> dict[str, object]:
    fix = {"event_id": str(uuid.uuid4()), "technician_id": "van-1", "recorded_at": datetime.now(UTC).isoformat()}
    return {"fixes": [{**fix, "latitude": 6.5, "longitude": 3.4}]}


@pytest.mark.parametrize("stack", ["jwks"], indirect=True)
async def test_a_misbehaving_jwks_refuses_every_token_quickly_and_recovers_without_a_restart(stack: Stack) -> None:
    assert stack.provider is not None
    provider = stack.provider
    stack.env["LOCSTREAM_JWT_JWKS_REFETCH_SECONDS"] = "1"
    stack.env["LOCSTREAM_JWT_JWKS_TIMEOUT_SECONDS"] = "1"  # the slow provider takes 5 s
    provider.mode = "down"  # from the start: the services never had a key
    api = await stack.start("producers")
    edge = await stack.start("ws-edge")
    writer, viewer = stack.token("tenant-a", Role.DEVICE_GATEWAY), stack.token("tenant-a")
    before = await end_offsets(stack.kafka)
    url = f"{api.url}/api/v1/field-service/locations/batch"
    async with httpx.AsyncClient(timeout=30) as http:
        modes: list[Mode] = ["down", "slow", "garbage", "empty", "redirect", "huge", "not-json-object"]
        for mode in modes:
            provider.mode = mode
            fetched = provider.requests

            async def refused_after_a_fetch(known: int = fetched, mode: str = mode) -> bool:
                began = time.monotonic()
                answer = await http.post(url, json=_batch(), headers={"Authorization": f"Bearer {writer}"})
                took = time.monotonic() - began
                assert answer.status_code == 401, (mode, answer.status_code, answer.text)
                assert answer.json()["message"] == "the identity provider's signing keys are unavailable", mode
                assert took < 4.5, (mode, took)  # the 1 s fetch deadline, not the slow provider's 5 s
                return provider.requests > known

            await eventually(refused_after_a_fetch, timeout=20, what=f"a fetch from the JWKS while {mode}")
            async with websockets.connect(f"{edge.ws_url}{WS_PATH}?token={viewer}") as ws:
                with pytest.raises(ConnectionClosed) as closed:
                    frame = await ws.recv()
                    pytest.fail(f"{mode}: got a data frame {frame!r}")
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008, mode
        assert await end_offsets(stack.kafka) == before  # nothing reached Kafka
        provider.mode = "ok"

        async def accepted() -> bool:
            answer = await http.post(url, json=_batch(), headers={"Authorization": f"Bearer {writer}"})
            return answer.status_code == 202

        await eventually(accepted, timeout=20, what="the writer's fix accepted once the JWKS answers")
    async with websockets.connect(f"{edge.ws_url}{WS_PATH}?token={viewer}") as ws:
        assert json.loads(await ws.recv())["type"] == "connected"
