"""The JavaScript client against a real edge: the seed hook's contract (its options and return values) with only
the URL changed, through the React hook, in Node."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import httpx
import pytest

from schemas.claims import Role
from tests.support.maps import WS_PATH
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

WEB = Path(__file__).resolve().parents[2] / "ws_edge" / "web"
SEED_RETURNS = {"technicians": "array", "isConnected": "boolean", "isConnecting": "boolean", "reconnect": "function"}


async def test_the_seed_hook_contract_works_against_the_edge(stack: Stack) -> None:
    await stack.start("projector")
    api = await stack.start("producers")
    edge = await stack.start("ws-edge")
    gateway = stack.token("acme-fiber", Role.DEVICE_GATEWAY)
    async with httpx.AsyncClient(timeout=10) as client:
        for technician, latitude in (("tech-ada", 6.52), ("tech-bola", 6.45)):
            answer = await client.post(
                f"{api.url}/api/v1/field-service/technicians/{technician}/location",
                json={"latitude": latitude, "longitude": 3.38},
                headers={"Authorization": f"Bearer {gateway}"},
            )
            assert answer.status_code == 202
    env = {**os.environ, "EDGE_WS_URL": f"{edge.ws_url}{WS_PATH}", "TOKEN": stack.token("acme-fiber"), "EXPECT": "2"}
    node = await asyncio.create_subprocess_exec(
        "node",
        "--experimental-websocket",
        "--no-warnings",
        str(WEB / "contract" / "seed-hook.mjs"),
        env=env,
        cwd=WEB,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(node.communicate(), 60)
    assert node.returncode == 0, err.decode()
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert SEED_RETURNS.items() <= result["shape"].items() and result["shape"]["error"] in ("object", "string")
    assert sorted(t["technician_id"] for t in result["technicians"]) == ["tech-ada", "tech-bola"]
    assert result["isConnecting"] is False and result["error"] is None
    assert result["events"][:1] == ["connect"] and result["events"].count("connect") == 2
    assert result["afterUnmount"] == "disconnected"  # unmounting closes the socket
