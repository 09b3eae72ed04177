"""``locstream dev``: one port serves the seed's URLs, the simulated fleet moves, the README's examples work."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys

import httpx
import pytest
import websockets

from launch import broker
from tests.support.stack import Stack, eventually

pytestmark = pytest.mark.integration


def readme_token(tenant: str, sub: str, role: str) -> str:
    """As the README does it: ``LOCSTREAM_DEV=1 locstream token ...`` (the dev secret)."""
    done = subprocess.run(
        [sys.executable, "-m", "launch.cli", "token", "--tenant", tenant, "--sub", sub, "--role", role],
        capture_output=True,
        text=True,
        check=True,
        env={"LOCSTREAM_DEV": "1", "PATH": "/usr/bin:/bin"},
    )
    return done.stdout.strip()


async def test_dev_stack_serves_the_readme_examples_and_the_simulated_fleet(stack: Stack) -> None:
    # The test broker stands in for the one `locstream dev` would start; no JWT secret: dev mode's own.
    dev = await stack.start("dev", "--data-dir", str(stack.data_dir), unset=("LOCSTREAM_JWT_SECRET",))
    assert "dispatcher token for acme-fiber" in dev.log()

    technician = readme_token("acme-fiber", "tech-ada", "technician")
    async with httpx.AsyncClient(base_url=dev.url) as client:
        posted = await client.post(
            "/api/v1/field-service/technicians/tech-ada/location",
            headers={"Authorization": f"Bearer {technician}"},
            json={"latitude": 6.5244, "longitude": 3.3792, "accuracy_meters": 8, "activity": "on_site"},
        )
    assert posted.status_code == 202, posted.text

    dispatcher = readme_token("acme-fiber", "d1", "dispatcher")
    url = f"{dev.ws_url}/api/v1/field-service/ws/technician-locations?token={dispatcher}"
    async with websockets.connect(url) as ws:
        assert json.loads(await ws.recv())["type"] == "connected"
        initial = json.loads(await ws.recv())
        assert initial["type"] == "initial_state"
        assert "tech-ada" in {t["technician_id"] for t in initial["data"]}
        seen: set[str] = set()

        async def whole_fleet_moved() -> bool:  # the simulator's three acme-fiber technicians all move
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert message["type"] == "location_update"
            seen.add(message["data"]["technician_id"])
            return seen >= {"tech-ada", "tech-bola", "tech-chi"}

        await eventually(whole_fleet_moved, timeout=20, what="updates of the simulated fleet")
        assert not seen & {"tech-dora", "tech-emil"}  # nothing of globex-isp reached acme-fiber's map

    async def summarised() -> bool:  # one line every 10 s instead of one per POST
        return "simulated fleet: " in dev.log()

    await eventually(summarised, timeout=20, what="the simulator's summary line")

    async def ready() -> bool:  # the service shell of every service, here for the three in one
        async with httpx.AsyncClient(base_url=dev.url) as client:
            return (await client.get("/readyz")).json()["ready"] is True

    await eventually(ready, timeout=30, what="the dev stack's /readyz")
    async with httpx.AsyncClient(base_url=dev.url) as client:
        admin = readme_token("acme-fiber", "ops", "admin")  # /metrics covers every tenant: an admin's
        assert (await client.get("/metrics")).status_code == 401
        metrics = (await client.get("/metrics", headers={"Authorization": f"Bearer {admin}"})).text
    for family in ("locstream_ingest_events_total", "locstream_projector_events_total", "locstream_edge_connections"):
        assert family in metrics, family
    assert '"POST /api/v1/field-service/technicians/' not in dev.log()  # no access log in dev by default


async def test_sigterm_stops_the_broker_dev_started_itself(stack: Stack) -> None:
    broker_port = broker.free_port_pair()
    dev = await stack.start(
        "dev",
        "--data-dir",
        str(stack.data_dir),
        "--broker-port",
        str(broker_port),
        "--no-simulate",
        unset=("LOCSTREAM_JWT_SECRET", "KAFKA_BOOTSTRAP_SERVERS"),
        timeout=120,
    )
    bootstrap = f"127.0.0.1:{broker_port}"
    assert await asyncio.to_thread(broker.answers, bootstrap, 10.0)
    # A newcomer's first start, on a broker of its own: not one ERROR line (aiokafka's retriable coordinator errors
    # while the fresh broker elects one are INFO)
    assert [line for line in dev.log().splitlines() if " ERROR " in line] == []
    dev.process.send_signal(signal.SIGTERM)
    await asyncio.to_thread(dev.process.wait, 60)
    assert "local Kafka broker stopped" in dev.log()
    assert not await asyncio.to_thread(broker.answers, bootstrap, 2.0)
