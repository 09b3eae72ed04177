"""The ``geofencer`` scenario, and its workload (shared with the processor's crash test): fences around a city and
technicians driving among them, deterministic for a seed. The scenario measures the rule alone in this process,
then a geofencer process working through a backlog of the same fixes on a real broker.

Each technician drives from job site to job site in steps of 20 to 120 m (a fix every 10 s), lingers a few fixes
inside (or, one visit in three, stops there for 5-10 minutes), and now and then sends a late fix (recorded before its
latest): crossings happen often, some at the edge, and stops and trips follow one another.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bench.procstats import cpu_seconds
from bench.scenario import BenchContext, Metrics, scenario
from bench.systems import JWT_SECRET, RunningSystem, free_port, service
from domain.geofencing import EARTH_RADIUS_M, FenceBook, TechnicianFences, fix_crossings
from domain.partitioning import tenant_partition
from domain.stays import Point, StayTrack
from locstream.fences import fence_records
from locstream.kafka import append_records, ensure_compacted_topic, ensure_topic, event_records
from locstream.settings import KafkaSettings
from schemas.events import FixQuality, LocationData, LocationRecorded
from schemas.geofences import Circle, GeofenceDefined
from schemas.tenant_rules import StayRules

CENTRE = (6.5244, 3.3792)
T0 = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
_DEGREE_M = math.pi / 180 * EARTH_RADIUS_M


@dataclass(frozen=True)
class Workload:
    fences: list[GeofenceDefined]
    fixes: list[LocationRecorded]  # in the order a fleet would send them (interleaved technicians)


def workload(
    *,
    tenants: int,
    fences_per_tenant: int,
    technicians_per_tenant: int,
    fixes_per_technician: int,
    spread_degrees: float = 0.05,
    seed: int = 1,
) -> Workload:
    rng = random.Random(seed)
    fences: list[GeofenceDefined] = []
    sites: dict[str, list[tuple[float, float]]] = {}
    for t in range(tenants):
        tenant = f"tenant-{t}"
        for f in range(fences_per_tenant):
            lat = CENTRE[0] + rng.uniform(-spread_degrees, spread_degrees)
            lon = CENTRE[1] + rng.uniform(-spread_degrees, spread_degrees)
            sites.setdefault(tenant, []).append((lat, lon))
            fences.append(
                GeofenceDefined(
                    tenant_id=tenant,
                    geofence_id=f"site-{f}",
                    at=T0,
                    shape=Circle(latitude=lat, longitude=lon, radius_meters=rng.choice([60.0, 100.0, 150.0, 250.0])),
                    name=f"Site {f}",
                    job_id=f"job-{f}",
                )
            )
    tracks: list[list[LocationRecorded]] = []
    for t in range(tenants):
        tenant = f"tenant-{t}"
        for k in range(technicians_per_tenant):
            tracks.append(_drive(rng, tenant, f"tech-{k}", sites[tenant], fixes_per_technician))
    fixes = [fix for step in zip(*tracks, strict=True) for fix in step]
    return Workload(fences, fixes)


_JUDGED = FixQuality()


def _drive(
    rng: random.Random, tenant: str, technician: str, sites: list[tuple[float, float]], count: int
) -> list[LocationRecorded]:
    lat, lon = rng.choice(sites)
    target = rng.choice(sites)
    fixes: list[LocationRecorded] = []
    at = T0
    linger = 0
    for _ in range(count):
        at += timedelta(seconds=10)
        dy, dx = (target[0] - lat) * _DEGREE_M, (target[1] - lon) * _DEGREE_M * math.cos(math.radians(lat))
        gap = math.hypot(dx, dy)
        if gap < 30 and linger <= 0:  # at a site: a few fixes, or (one visit in three) a stop of 5-10 minutes
            linger = rng.randint(1, 4) if rng.random() < 2 / 3 else rng.randint(31, 60)
        if linger > 0:
            linger -= 1
            if linger == 0:
                target = rng.choice(sites)
        else:
            step = min(gap, rng.uniform(20, 120))
            lat += dy / gap * step / _DEGREE_M if gap else 0.0
            lon += dx / gap * step / (_DEGREE_M * math.cos(math.radians(lat))) if gap else 0.0
        jitter_lat, jitter_lon = rng.gauss(0, 8) / _DEGREE_M, rng.gauss(0, 8) / _DEGREE_M
        late = rng.random() < 0.02
        fixes.append(
            LocationRecorded(
                event_id=uuid.UUID(int=rng.getrandbits(128), version=4),
                tenant_id=tenant,
                technician_id=technician,
                recorded_at=at - timedelta(minutes=5) if late else at,
                received_at=at,
                data=LocationData(
                    latitude=lat + jitter_lat,
                    longitude=lon + jitter_lon,
                    accuracy_meters=round(rng.uniform(3, 40), 1),
                    backfill=late,
                    quality=_JUDGED,  # as the ingest API stamps every fix: the quality rule runs on each
                ),
            )
        )
    return fixes


def measure_core(load: Workload) -> dict[str, float]:
    """The rules alone (quality, then fences, then stops and trips, as the processor applies them), in this process:
    fixes evaluated per second and CPU-µs per fix (decoding excluded), and the same for the fences alone."""
    book = FenceBook()
    for fence in load.fences:
        book.apply(fence)
    rules = StayRules()
    figures: dict[str, float] = {}
    for name, with_stays in (("core", True), ("core_fences_only", False)):
        states: dict[tuple[str, str], TechnicianFences] = {}
        tracks: dict[tuple[str, str], StayTrack] = {}
        crossings = stays = 0
        wall, cpu = time.perf_counter(), time.process_time()
        for fix in load.fixes:
            key = (fix.tenant_id, fix.technician_id)
            state = states.setdefault(key, TechnicianFences())
            crossed = fix_crossings(state, book.index(fix.tenant_id), fix)
            if crossed is None:
                continue
            crossings += len(crossed)
            if with_stays:
                track = tracks.get(key) or tracks.setdefault(key, StayTrack())
                data = fix.data
                stays += len(track.add(Point(fix.recorded_at.timestamp(), data.latitude, data.longitude), rules) or ())
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        figures[f"{name}_fixes_per_second"] = round(len(load.fixes) / wall)
        figures[f"{name}_cpu_us_per_fix"] = round(cpu / len(load.fixes) * 1e6, 2)
        if with_stays:
            figures |= {"crossings": crossings, "stays_events": stays}
    return figures


@scenario(
    "geofencer",
    {
        "small": [
            {"fences": 1_000, "technicians": 200, "fixes": 60_000},
            {"fences": 1_000, "technicians": 200, "fixes": 60_000, "tenants": 4, "processes": 1},
            {"fences": 1_000, "technicians": 200, "fixes": 60_000, "tenants": 4, "processes": 2},
        ],
        "full": [
            {"fences": 10_000, "technicians": 1_000, "fixes": 300_000},
            {"fences": 10_000, "technicians": 1_000, "fixes": 300_000, "tenants": 4, "processes": 1},
            {"fences": 10_000, "technicians": 1_000, "fixes": 300_000, "tenants": 4, "processes": 2},
        ],
    },
    headline="processor_fixes_per_second",
    what="a backlog of N fixes of T tenants (1 unless said; their fences and technicians split evenly) with F"
    " circular fences (60-250 m) across a metro area, read by P derived-facts (geofencer) processes in one group"
    " (1 unless said) with every rule on (quality, fences, stops and trips); and the rules alone in the bench's"
    " process (core_*; core_fences_only_*: without stops and trips)",
    notes=[
        "target: >= 50,000 fixes/s with 10,000 fences in a tenant (issue 19)",
        "tenants=4: a topic of 4 partitions, one tenant each, so 2 processes get 2 partitions each (docs/scale-out.md)",
    ],
    systems=("locstream",),
    standalone=True,
)
async def measure(system: RunningSystem, p: dict[str, Any], ctx: BenchContext) -> Metrics:
    """The workload's fences on a fences topic and its fixes on a fresh topic; then P geofencer processes in one
    group read the backlog from its beginning: fixes/s from when every one reads its share of the partitions to the
    last fix, and their CPU-µs per fix."""
    bootstrap, workdir = ctx.bootstrap, ctx.workdir
    tenants, processes = int(p.get("tenants", 1)), int(p.get("processes", 1))
    load = workload(
        tenants=tenants,
        fences_per_tenant=p["fences"] // tenants,
        technicians_per_tenant=p["technicians"] // tenants,
        fixes_per_technician=p["fixes"] // p["technicians"],
        spread_degrees=0.25,  # a metro area about 55 km across: job sites every few hundred metres
        seed=p["fences"],
    )
    core = measure_core(load) if processes == 1 else {}
    topic = f"bench.geofencer.{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings(
        bootstrap_servers=bootstrap,
        topic=topic,
        geofences_topic=f"{topic}.geofences",
        partitions=4 if tenants == 4 else KafkaSettings().partitions,
    )
    if tenants == 4:  # tenant-0..3 land on partitions 0..3 of 4: an even share for each of 2 processes
        assert sorted(tenant_partition(f"tenant-{t}", 4) for t in range(4)) == [0, 1, 2, 3]
    await ensure_topic(kafka)
    await ensure_compacted_topic(kafka, kafka.geofences_topic)
    fixes = list(event_records(kafka, load.fixes))
    # Several processes: the first one to join would read a backlog alone until the others are up (a small one
    # whole), so they start on the fences alone and the fixes are written once the group has settled; the clock
    # starts then, so their figure includes the writing (a lower bound of what they read).
    later = fixes if processes > 1 else []
    records = [*fence_records(kafka, load.fences), *(fixes if not later else [])]
    await append_records(kafka, records, in_flight=len(records), linger_ms=5)
    env = {
        **os.environ,
        "LOCSTREAM_JWT_SECRET": JWT_SECRET,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_TOPIC": kafka.topic,
        "KAFKA_PARTITIONS": str(kafka.partitions),
        "KAFKA_GEOFENCES_TOPIC": kafka.geofences_topic,
        "LOCSTREAM_GEOFENCER_START_FROM": "beginning",
        "LOCSTREAM_GEOFENCER_GROUP_ID": f"{topic}.group",
    }
    async with contextlib.AsyncExitStack() as running, httpx.AsyncClient(timeout=5.0) as client:
        children, ports = [], []
        for number in range(processes):
            port, metrics_port = free_port(), free_port()
            own = {
                **env,
                "LOCSTREAM_DATA_DIR": str(workdir / topic / str(number)),
                "LOCSTREAM_METRICS_PORT": str(metrics_port),
            }
            serving = f"http://127.0.0.1:{metrics_port}/healthz"
            command = ["geofencer", "--port", str(port)]
            log = workdir / f"{topic}.{number}.log"
            children.append(
                await running.enter_async_context(service(command, own, log, serving, timeout=900, every=0.01))
            )
            ports.append(metrics_port)

        async def evaluated() -> float:
            total = 0.0
            for metrics_port in ports:
                try:
                    text = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
                except httpx.HTTPError:
                    continue
                found = re.search(r"^locstream_geofencer_fixes_total (\S+)$", text, re.M)
                total += float(found.group(1)) if found else 0.0
            return total

        async def sharing() -> bool:  # every process reads a share of the partitions (the group has settled)
            for metrics_port in ports:
                health = (await client.get(f"http://127.0.0.1:{metrics_port}/healthz")).json()
                if not health.get("ready") or not health.get("partitions"):
                    return False
            return True

        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            if await sharing():
                break
            await asyncio.sleep(0.01)
        first = (time.monotonic(), sum(cpu_seconds(child.pid) for child in children), await evaluated())
        if later:  # timed from here: the processes read the fixes as they are written (at full speed), then the rest
            await append_records(kafka, later, in_flight=len(later), linger_ms=5)
        done = first[2]
        while done < len(load.fixes) and time.monotonic() < deadline:
            # Every poll is a /metrics page the processes render on their loop: at 10 ms it was 5% of their samples.
            await asyncio.sleep(0.1)
            done = await evaluated()
        finished, cpu = time.monotonic(), sum(cpu_seconds(child.pid) for child in children)
    if done < len(load.fixes):
        raise RuntimeError(f"the geofencers evaluated {done} of {len(load.fixes)} fixes")
    counted = len(load.fixes) - first[2]
    if counted <= 0:
        raise RuntimeError(f"all {len(load.fixes)} fixes were evaluated before the clock started: too few to time")
    return {
        "processor_fixes_per_second": round(counted / max(finished - first[0], 1e-6)),
        "processor_cpu_us_per_fix": round((cpu - first[1]) / counted * 1e6, 2),
        **core,
        "timed_fixes": counted,  # those evaluated after the clock started
        "fences": len(load.fences),
        "fixes": len(load.fixes),
        "tenants": tenants,
        "processes": processes,
    }
