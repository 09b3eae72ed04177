"""The history endpoint and the rebuild, against the real broker and a projector process."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from domain.projection import fold
from schemas.events import Event
from tests.projector.test_crash_recovery import caught_up, mixed_stream
from tests.support.events import T0, location
from tests.support.kafka_io import produce, read_all
from tests.support.stack import Stack, eventually

pytestmark = pytest.mark.integration


def fixes(tenant: str, technician: str, count: int) -> list[Event]:
    return [
        location(
            tenant, technician, T0 + timedelta(minutes=i), float(i), 1.0, received_at=datetime.now(UTC), speed_kmh=30.0
        )
        for i in range(count)
    ]


async def test_history_lists_a_tenants_fixes_newest_first_and_hides_other_tenants(stack: Stack) -> None:
    projector = await stack.start("projector")
    await produce(stack.kafka, fixes("tenant-a", "tech-1", 5) + fixes("tenant-b", "tech-9", 2))
    await eventually(lambda: caught_up(stack), timeout=30, what="the projector to catch up")
    path = "/api/v1/field-service/technicians/{}/location-history"
    async with httpx.AsyncClient(base_url=projector.url) as client:
        a = {"Authorization": f"Bearer {stack.token('tenant-a')}"}
        everything = await client.get(path.format("tech-1"), headers=a)
        window = await client.get(
            path.format("tech-1"),
            headers=a,
            params={
                "start_time": (T0 + timedelta(minutes=1)).isoformat(),
                "end_time": (T0 + timedelta(minutes=3)).isoformat(),
                "limit": 1,
            },
        )
        other_tenants = await client.get(path.format("tech-9"), headers=a)
        too_many = await client.get(path.format("tech-1"), headers=a, params={"limit": 100_000})
        no_token = await client.get(path.format("tech-1"))
    assert everything.status_code == 200, everything.text
    body = everything.json()
    assert body["total_points"] == 5 and [p["latitude"] for p in body["locations"]] == [4.0, 3.0, 2.0, 1.0, 0.0]
    assert body["locations"][0]["speed_kmh"] == 30.0
    assert [p["latitude"] for p in window.json()["locations"]] == [2.0]
    assert other_tenants.status_code == 404
    assert too_many.status_code == 422 and "limit" in too_many.json()["message"]
    assert no_token.status_code == 401


async def test_rebuild_while_the_live_projector_runs_switches_without_losing_an_event(stack: Stack) -> None:
    now = datetime.now(UTC)
    await stack.start("projector")
    first, second = mixed_stream(20_000, seed=11, now=now), mixed_stream(5_000, seed=12, now=now)
    await produce(stack.kafka, first)
    generation_before = (await stack.snapshot()).generation
    rebuilding = asyncio.create_task(
        asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "launch.cli", "projector", "rebuild"],
            env={**os.environ, **stack.env},
            capture_output=True,
            text=True,
            timeout=300,
        )
    )
    await produce(stack.kafka, second, per_second=5_000)  # the live projector keeps consuming meanwhile
    done = await rebuilding
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["events"] >= len(first) and "ETA" in done.stderr
    await eventually(lambda: caught_up(stack), timeout=60, what="the live projector to follow the new tables")
    snapshot = await stack.snapshot()
    assert snapshot.generation == generation_before + 1 == summary["generation"]
    assert {(s.tenant_id, s.technician_id): s for s in snapshot.states} == fold(await read_all(stack.kafka))
