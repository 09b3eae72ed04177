"""The ``export`` scenario: ``locstream replay`` exporting a tenant's history to NDJSON, as a process.

A fresh one-partition topic is filled with N fixes (2% retried) by a producer in this process; then
``locstream replay`` exports the range that covers all of them to a file, and the figures are the export's own
summary (events written per second of its read loop) and the process's wall and CPU time including start-up.
Two points: the tenant owns the whole partition, and the tenant shares it with 9 others (a tenth of the records
are its own; the others are skipped by key).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.projection import fill_topic
from bench.scenario import BenchContext, Metrics, scenario
from bench.systems import JWT_SECRET, RunningSystem
from locstream.auth import issue_token
from locstream.settings import AuthSettings, KafkaSettings
from schemas.claims import Role


@scenario(
    "export",
    {
        "small": [{"events": 2_000, "tenants": 1}],
        "full": [{"events": 1_000_000, "tenants": 1}, {"events": 1_000_000, "tenants": 10}],
    },
    headline="events_per_second",
    what="locstream replay exports one tenant's range of a one-partition topic of N fixes (2% retried) to"
    " NDJSON; tenants: how many share the partition",
    systems=("locstream",),
    standalone=True,
)
async def measure(system: RunningSystem, p: dict[str, Any], ctx: BenchContext) -> Metrics:
    """``locstream replay`` exporting a tenant's history of N events to NDJSON."""
    bootstrap, count, tenants, workdir = ctx.bootstrap, p["events"], p["tenants"], ctx.workdir
    kafka = KafkaSettings(bootstrap_servers=bootstrap, topic=f"bench.export.{uuid.uuid4().hex[:8]}", partitions=1)
    start = datetime.now(UTC) - timedelta(seconds=1)
    await fill_topic(kafka, count, tenants=tenants)
    end = datetime.now(UTC) + timedelta(seconds=1)
    token = issue_token(AuthSettings(jwt_secret=JWT_SECRET), tenant_id="tenant-0", sub="bench", role=Role.ANALYST)
    out = workdir / f"export-{uuid.uuid4().hex[:8]}.ndjson"
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_TOPIC": kafka.topic,
        "LOCSTREAM_JWT_SECRET": JWT_SECRET,
        "LOCSTREAM_TOKEN": token,
    }
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "launch.cli",
        "replay",
        "--tenant",
        "tenant-0",
        "--from",
        start.isoformat(),
        "--to",
        end.isoformat(),
        "--out",
        str(out),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    wall = time.monotonic() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode != 0:
        raise RuntimeError(f"replay exited with {process.returncode}: {stderr.decode()[-500:]}")
    summary: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    lines = sum(1 for _ in out.open("rb"))
    out.unlink()
    if lines != summary["events"]:
        raise RuntimeError(f"the file has {lines} lines, the summary says {summary['events']}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "events_per_second": summary["events_per_second"],
        "records_read_per_second": round(summary["records_read"] / summary["seconds"], 1),
        "events": summary["events"],
        "duplicates": summary["duplicates"],
        "records_read": summary["records_read"],
        "export_seconds": summary["seconds"],
        "process_wall_seconds": round(wall, 3),
        "process_cpu_seconds": round(cpu, 3),
    }
