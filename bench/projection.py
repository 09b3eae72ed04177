"""The ``projector`` scenario: how fast the projector applies a backlog into SQLite and PostgreSQL, and rebuilds.

A fresh topic is filled with N events (fixes of 200 technicians in 20 tenants, some late, some retried) by a
producer in this process; then a projector process starts on an empty database and the clock runs from its
first applied batch to the last; then ``locstream projector rebuild`` replays the same topic into new tables; then
two projector processes in one consumer group apply it to a fresh SQLite file; then one into PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.procstats import cpu_seconds
from bench.scenario import BenchContext, Metrics, scenario
from bench.systems import JWT_SECRET, RunningSystem, free_port, spawn_module
from launch.postgres_local import fresh_database
from locstream.kafka import Record, append_records, ensure_topic
from locstream.settings import KafkaSettings
from schemas.events import LocationData, LocationRecorded, encode_event


async def fill_topic(kafka: KafkaSettings, count: int, tenants: int = 20) -> None:
    """``count`` fixes of ``tenants`` tenants (``tenant-0``...), 10 technicians each, 2% of them retried."""
    await ensure_topic(kafka)
    rng = random.Random(count)
    now = datetime.now(UTC)

    def records() -> Iterator[Record]:
        recent: list[bytes] = []
        for i in range(count):
            if recent and rng.random() < 0.02:
                value = rng.choice(recent)  # a retried event: same event_id
                key = json.loads(value)["tenant_id"].encode()
            else:
                tenant = f"tenant-{rng.randrange(tenants)}"
                event = LocationRecorded(
                    event_id=uuid.uuid4(),
                    tenant_id=tenant,
                    technician_id=f"tech-{rng.randrange(10)}",
                    recorded_at=now - timedelta(seconds=count - i + rng.choice([0, 0, 0, -300])),
                    received_at=now,
                    data=LocationData(latitude=rng.uniform(-80, 80), longitude=rng.uniform(-170, 170)),
                )
                value, key = encode_event(event), tenant.encode()
                recent = [*recent[-99:], value]
            yield kafka.topic, key, value

    await append_records(kafka, records(), linger_ms=5, max_batch_size=256 * 1024)


async def _project(
    kafka: KafkaSettings, count: int, env: dict[str, str], workdir: Path, processes: int = 1
) -> dict[str, Any]:
    """Start ``processes`` projectors (one consumer group) on an empty database; events/s from the first applied
    batch to the last, and CPU-µs per event summed over the processes."""
    ports = [free_port() for _ in range(processes)]
    kafka_env = {**env, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers, "KAFKA_TOPIC": kafka.topic}
    kafka_env.setdefault("LOCSTREAM_PROJECTOR_GROUP_ID", f"bench.projector.{kafka.topic}")  # never another's group
    started = [
        spawn_module("launch.cli", ["projector", "--port", str(port)], kafka_env, workdir / f"projector-{port}.log")
        for port in ports
    ]
    try:
        first: float | None = None
        applied = 0
        async with httpx.AsyncClient(timeout=5.0) as client:
            deadline = time.monotonic() + 900
            while applied < count and time.monotonic() < deadline:
                applied = 0
                for port in ports:
                    try:
                        health = (await client.get(f"http://127.0.0.1:{port}/healthz")).json()
                        applied += health["applied"] + health.get("duplicates", 0)
                    except (httpx.HTTPError, KeyError, ValueError):
                        pass
                if applied and first is None:
                    first = time.monotonic()
                await asyncio.sleep(0.05)
        done = time.monotonic()
        cpu = sum(cpu_seconds(process.pid) for process in started)
        if applied < count or first is None:
            raise RuntimeError(f"projectors applied {applied} of {count}")
        return {
            "events_per_second": round(count / max(done - first, 1e-6), 1),
            "cpu_us_per_event": round(cpu / count * 1e6, 2),
        }
    finally:
        for process in started:
            process.terminate()
        for process in started:
            await asyncio.to_thread(process.wait)


async def _rebuild(kafka: KafkaSettings, env: dict[str, str]) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "launch.cli",
        "projector",
        "rebuild",
        env={**env, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers, "KAFKA_TOPIC": kafka.topic},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"rebuild exited with {process.returncode}")
    summary: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return summary


@scenario(
    "projector",
    {"small": [{"events": 2_000}], "full": [{"events": 1_000_000}]},
    headline="sqlite_events_per_second",
    what="a backlog of N events (2% retries) applied by a fresh projector process; then a SQLite rebuild;"
    " then two projector processes in one consumer group on a fresh SQLite file",
    systems=("locstream",),
    standalone=True,
)
async def measure(system: RunningSystem, p: dict[str, Any], ctx: BenchContext) -> Metrics:
    """One run: fill a topic; project it into SQLite, rebuild that, project it with two processes into a fresh
    SQLite file, and into PostgreSQL."""
    bootstrap, count, workdir = ctx.bootstrap, p["events"], ctx.workdir
    postgres_server = await ctx.postgres()
    kafka = KafkaSettings(bootstrap_servers=bootstrap, topic=f"bench.projection.{uuid.uuid4().hex[:8]}")
    began = time.monotonic()
    await fill_topic(kafka, count)
    fill_seconds = time.monotonic() - began
    base = {**os.environ, "LOCSTREAM_JWT_SECRET": JWT_SECRET}
    sqlite_env = {**base, "LOCSTREAM_DATA_DIR": str(workdir / f"sqlite-{kafka.topic}")}
    sqlite = await _project(kafka, count, sqlite_env, workdir)
    rebuild = await _rebuild(kafka, sqlite_env)
    sqlite_pair_env = {**base, "LOCSTREAM_DATA_DIR": str(workdir / f"sqlite-pair-{kafka.topic}")}
    sqlite_pair = await _project(kafka, count, sqlite_pair_env, workdir, processes=2)
    async with fresh_database(postgres_server) as dsn:
        postgres = await _project(kafka, count, {**base, "LOCSTREAM_DATABASE_URL": dsn}, workdir)
    return {
        "sqlite_events_per_second": sqlite["events_per_second"],
        "sqlite_cpu_us_per_event": sqlite["cpu_us_per_event"],
        "sqlite_2_processes_events_per_second": sqlite_pair["events_per_second"],
        "sqlite_2_processes_cpu_us_per_event": sqlite_pair["cpu_us_per_event"],
        "postgres_events_per_second": postgres["events_per_second"],
        "postgres_cpu_us_per_event": postgres["cpu_us_per_event"],
        "rebuild_sqlite_events_per_second": rebuild["events_per_second"],
        "rebuild_sqlite_seconds": rebuild["seconds"],
        "events": count,
        "fill_seconds": round(fill_seconds, 2),
    }
