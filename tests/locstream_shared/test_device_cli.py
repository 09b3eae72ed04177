"""``locstream device add|list|revoke`` as an operator runs it, against a real broker and the ingest API."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import httpx
import pytest

from launch.device_cli import owntracks_config_url, qr_text
from tests.support.stack import Stack, eventually

pytestmark = pytest.mark.integration


async def _locstream(stack: Stack, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "launch.cli",
        "device",
        *args,
        env={**os.environ, **stack.env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_add_prints_each_apps_settings_and_a_qr_code_list_and_revoke_take_effect_on_the_api(
    stack: Stack,
) -> None:
    api = await stack.start("producers")
    code, out, err = await _locstream(
        stack, "add", "--tenant", "tenant-a", "--technician", "tech-1", "--label", "van 3", "--server", api.url
    )
    assert code == 0, err
    key = out.split("key (shown once): ")[1].split()[0]
    assert f"device_identifier: {key}" in out and "OwnTracks: scan to configure" in out and "█" in out
    code, listed, _ = await _locstream(stack, "list", "--tenant", "tenant-a", "--json")
    (device,) = json.loads(listed)
    assert device["technician_id"] == "tech-1" and device["label"] == "van 3" and key not in listed
    code, other, _ = await _locstream(stack, "list", "--tenant", "tenant-b", "--json")
    assert json.loads(other) == []
    url = f"{api.url}/api/v1/ingest/osmand?id={key}&lat=1.0&lon=2.0"
    async with httpx.AsyncClient() as http:

        async def status() -> int:
            return (await http.get(url)).status_code

        await eventually(lambda: _is(status, 200), timeout=5, what="the API to know the device the CLI added")
        code, out, _ = await _locstream(stack, "revoke", device["device_id"])
        assert code == 0 and "revoked" in out
        await eventually(lambda: _is(status, 401), timeout=2, what="the API to refuse the revoked key")
    code, _, err = await _locstream(stack, "revoke", device["device_id"])
    assert code == 2 and "no active device" in err
    code, _, err = await _locstream(stack, "add", "--tenant", "tenant-a")
    assert code == 2 and "--technician" in err


async def _is(status: object, expected: int) -> bool:
    assert callable(status)
    return bool(await status() == expected)


def test_the_owntracks_qr_code_carries_the_apps_whole_configuration() -> None:
    url = owntracks_config_url({"url": "https://x/api/v1/ingest/owntracks", "username": "any", "password": "k"}, "t")
    assert url.startswith("owntracks:///config?inline=")
    assert "█" in qr_text(url)
