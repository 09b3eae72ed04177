"""The geofencing workload, shared by the ``geofencer`` bench scenario and the processor's crash test: fences
around a city and technicians driving among them, deterministic for a seed.

Each technician drives from job site to job site in steps of 20 to 120 m (a fix every 10 s), lingers a few fixes
inside, and now and then sends a late fix (recorded before its latest): crossings happen often, some at the edge.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from domain.geofencing import EARTH_RADIUS_M
from schemas.events import LocationData, LocationRecorded
from schemas.geofences import Circle, GeofenceDefined

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
        if gap < 30 and linger <= 0:
            linger = rng.randint(1, 4)
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
                ),
            )
        )
    return fixes
