"""A restart of the whole deployment loses nothing: the three-node cluster and every service stopped (SIGTERM, then
again with kill -9) and started again from the same data directories, with the settings compose.yaml passes.

Before each stop, fixes are acknowledged (202: Kafka has them) through the API and through a device key, and a
technician walks into a fence. After each start: every acknowledged fix is in the history, and on the topic exactly
once; the map's initial state is what it was; the geofencer still knows who is inside (walking out gives an exit);
the device key and the fence still work.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml

from launch.postgres_local import fresh_database
from locstream.settings import KafkaSettings
from projector.postgres_store import PostgresProjectionStore
from projector.store import HistoryPoint
from schemas.claims import Role
from schemas.events import GeofenceExited, LocationRecorded
from tests.conftest import TEST_JWT_SECRET
from tests.faults.drivers import FaultDriver
from tests.support.kafka_io import end_offsets, read_all
from tests.support.maps import open_map
from tests.support.ports import free_port
from tests.support.stack import Service, Stack, eventually

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("fault-cluster-restart")]

ROOT = Path(__file__).resolve().parents[2]
TENANT = "acme-fiber"
PREFIX = "/api/v1/field-service"
SITE = (6.5244, 3.3792)  # the fence's centre; 100 m radius
OUTSIDE = (6.5344, 3.3792)  # about 1.1 km north


def compose_kafka_settings() -> dict[str, str]:
    """The topic settings compose.yaml gives the services (partitions, replication, retention)."""
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    environment: dict[str, str] = compose["services"]["producers"]["environment"]
    return {k: v for k, v in environment.items() if k.startswith("KAFKA_") and k != "KAFKA_BOOTSTRAP_SERVERS"}


class Deployment:
    """The services of compose.yaml as processes, on the fault suite's cluster and a PostgreSQL database."""

    def __init__(self, stack: Stack, dsn: str) -> None:
        self.stack, self.dsn = stack, dsn
        self.services: dict[str, Service] = {}

    async def start(self) -> None:
        names = ("projector", "producers", "ws-edge", "geofencer")
        started = await asyncio.gather(*(self.stack.start(name) for name in names))
        self.services = dict(zip(names, started, strict=True))

    async def stop(self, how: signal.Signals) -> None:
        for service in self.services.values():
            service.process.send_signal(how)
        for service in self.services.values():
            await asyncio.to_thread(service.process.wait, 30)

    def api(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.services["producers"].url, timeout=30)

    async def post_fixes(self, technician: str, count: int, start: datetime, where: tuple[float, float]) -> list[str]:
        token = self.stack.token(TENANT, Role.DEVICE_GATEWAY)
        ids = [str(uuid.uuid4()) for _ in range(count)]
        fixes = [
            {
                "event_id": ids[i],
                "technician_id": technician,
                "recorded_at": (start + timedelta(seconds=i)).isoformat(),
                "latitude": where[0] + i * 1e-7,
                "longitude": where[1],
                "accuracy_meters": 5,
            }
            for i in range(count)
        ]
        async with self.api() as http:
            answer = await http.post(
                f"{PREFIX}/locations/batch", json={"fixes": fixes}, headers={"Authorization": f"Bearer {token}"}
            )
        assert answer.status_code == 202, answer.text
        return ids

    async def caught_up(self) -> bool:
        ends = await end_offsets(self.stack.kafka)
        stored = (await self.stack.snapshot()).offsets  # the projection LOCSTREAM_DATABASE_URL points to
        return all(stored.get(partition, 0) >= end for partition, end in ends.items())

    async def history(self, technician: str) -> list[HistoryPoint]:
        store = PostgresProjectionStore(self.dsn, self.stack.kafka.topic)
        await store.open()
        try:
            return await store.history(TENANT, technician, None, None, 100_000) or []
        finally:
            await store.close()

    async def initial_state(self) -> list[dict[str, Any]]:
        ws, first = await open_map(self.services["ws-edge"], self.stack.token(TENANT, Role.DISPATCHER))
        await ws.close()
        assert first["type"] == "initial_state"
        technicians: list[dict[str, Any]] = first["data"]
        return sorted(technicians, key=lambda t: str(t["technician_id"]))


@pytest_asyncio.fixture(loop_scope="function")
async def deployment(
    fault_cluster: FaultDriver, postgres_server: str, tmp_path: Path
) -> AsyncIterator[tuple[Deployment, FaultDriver]]:
    settings = compose_kafka_settings()
    topic = f"locations.restart.{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings(
        bootstrap_servers=fault_cluster.bootstrap,
        topic=topic,
        partitions=int(settings["KAFKA_PARTITIONS"]),
        replication_factor=int(settings["KAFKA_REPLICATION_FACTOR"]),
    )
    async with fresh_database(postgres_server) as dsn:
        env = {
            **settings,
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "KAFKA_TOPIC": topic,
            "KAFKA_DEVICES_TOPIC": kafka.devices_topic,
            "KAFKA_GEOFENCES_TOPIC": kafka.geofences_topic,
            "LOCSTREAM_DATA_DIR": str(tmp_path / "data"),
            "LOCSTREAM_DATABASE_URL": dsn,
            "LOCSTREAM_JWT_SECRET": TEST_JWT_SECRET,
        }
        stack = Stack(env=env, kafka=kafka, data_dir=tmp_path / "data", log_dir=tmp_path, port=free_port)
        running = Deployment(stack, dsn)
        try:
            await running.start()
            yield running, fault_cluster
        finally:
            await stack.close()


async def _exits(kafka: KafkaSettings, technician: str) -> int:
    return sum(
        1
        for event, _ in await read_all(kafka)
        if isinstance(event, GeofenceExited) and event.technician_id == technician
    )


async def test_a_restart_of_everything_loses_no_acknowledged_fix_and_keeps_the_state(
    deployment: tuple[Deployment, FaultDriver],
) -> None:
    running, cluster = deployment
    stack = running.stack
    admin = {"Authorization": f"Bearer {stack.token(TENANT, Role.ADMIN)}"}
    async with running.api() as http:
        fence = {"latitude": SITE[0], "longitude": SITE[1], "radius_meters": 100, "name": "Cabinet 12"}
        assert (await http.put(f"{PREFIX}/geofences/cabinet-12", json=fence, headers=admin)).status_code == 200
        registered = await http.post(f"{PREFIX}/devices", json={"technician_id": "tech-phone"}, headers=admin)
        assert registered.status_code == 201, registered.text
    key = registered.json()["key"]

    acknowledged: list[str] = []
    device_fixes: list[float] = []
    start = datetime.now(UTC) - timedelta(minutes=30)
    for round_number, how in enumerate((signal.SIGTERM, signal.SIGKILL)):
        base = start + timedelta(minutes=10 * round_number)
        acknowledged += await running.post_fixes("tech-road", 200, base, OUTSIDE)
        # tech-walk walks into the fence (an enter) and stays there over the restart.
        acknowledged += await running.post_fixes("tech-walk", 3, base, SITE)
        latitude = 1.0 + round_number / 100  # the phone moves 1.1 km in the 10 minutes between rounds: no jump
        async with running.api() as http:
            answer = await http.get(
                "/api/v1/ingest/osmand",
                params={"id": key, "lat": latitude, "lon": 2.0, "timestamp": int(base.timestamp())},
            )
        assert answer.status_code == 200, answer.text
        device_fixes.append(latitude)
        await eventually(running.caught_up, timeout=60, what="the projector to apply every fix")
        before = await running.initial_state()
        exits_before = await _exits(stack.kafka, "tech-walk")

        await running.stop(how)
        if how is signal.SIGTERM:
            await asyncio.gather(*(cluster.stop(node) for node in cluster.nodes))
        else:
            await asyncio.gather(*(cluster.kill(node) for node in cluster.nodes))
        await asyncio.gather(*(cluster.start(node) for node in cluster.nodes))
        await running.start()

        # Every acknowledged fix: in the history, and on the topic exactly once.
        await eventually(running.caught_up, timeout=60, what="the restarted projector to catch up")
        stored = {p.event_id for technician in ("tech-road", "tech-walk") for p in await running.history(technician)}
        lost = [event_id for event_id in acknowledged if event_id not in stored]
        on_topic = Counter(
            str(event.event_id) for event, _ in await read_all(stack.kafka) if isinstance(event, LocationRecorded)
        )
        twice = [event_id for event_id in acknowledged if on_topic[event_id] != 1]
        assert (len(lost), len(twice)) == (0, 0), (how.name, lost[:5], twice[:5])
        assert [p.latitude for p in await running.history("tech-phone")] == device_fixes[::-1]  # newest first
        assert await running.initial_state() == before, how.name

        # The geofencer remembers tech-walk is inside: walking out is an exit.
        await running.post_fixes("tech-walk", 1, base + timedelta(minutes=1), OUTSIDE)

        async def exited(expected: int = exits_before + 1) -> bool:
            return await _exits(stack.kafka, "tech-walk") == expected

        await eventually(exited, timeout=60, what=f"an exit after the {how.name} restart")
        acknowledged += await running.post_fixes("tech-walk", 1, base + timedelta(minutes=2), SITE)  # back inside

        # The device key still works.
        async with running.api() as http:
            again = await http.get(
                "/api/v1/ingest/osmand",
                params={"id": key, "lat": latitude + 0.005, "lon": 2.0, "timestamp": int(base.timestamp()) + 60},
            )
        assert again.status_code == 200, again.text
        device_fixes.append(latitude + 0.005)  # 555 m in a minute
    assert len(acknowledged) == 2 * 203 + 2
