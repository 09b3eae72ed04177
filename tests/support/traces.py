"""Traces that look like a phone's, seeded so that a failure repeats: parked with GPS jitter, driving with urban
canyon spikes, a gap, a walk around a job site. Each point says what it is (``truth``), so a test can hold the rules
to it without a list of expected answers written by hand."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import gpxpy

from domain.fence_shapes import METRES_PER_DEGREE


@dataclass(frozen=True)
class TracePoint:
    at: datetime
    latitude: float
    longitude: float
    accuracy_meters: float
    truth: Literal["good", "spike"]


def offset(latitude: float, longitude: float, north_m: float, east_m: float) -> tuple[float, float]:
    """The point ``north_m`` and ``east_m`` metres from (latitude, longitude)."""
    return (
        latitude + north_m / METRES_PER_DEGREE,
        longitude + east_m / (METRES_PER_DEGREE * math.cos(math.radians(latitude))),
    )


def _jittered(rng: random.Random, latitude: float, longitude: float, low: float, high: float) -> tuple[float, float]:
    distance, bearing = rng.uniform(low, high), rng.uniform(0, math.tau)
    return offset(latitude, longitude, distance * math.cos(bearing), distance * math.sin(bearing))


def parked(
    rng: random.Random, start: datetime, latitude: float, longitude: float, seconds: float, every: float = 5.0
) -> list[TracePoint]:
    """Standing still: each fix 5-30 m from the spot, in any direction."""
    return [
        TracePoint(start + timedelta(seconds=i * every), *_jittered(rng, latitude, longitude, 5, 30), 15.0, "good")
        for i in range(int(seconds / every))
    ]


def drive(
    rng: random.Random,
    start: datetime,
    latitude: float,
    longitude: float,
    *,
    bearing_deg: float,
    kmh: float,
    seconds: float,
    every: float = 1.0,
    spike_every: int = 0,
) -> list[TracePoint]:
    """A straight drive with a few metres of noise; every ``spike_every``-th fix (0: none) an urban canyon spike
    300-2,000 m off the road."""
    points = []
    north, east = math.cos(math.radians(bearing_deg)), math.sin(math.radians(bearing_deg))
    for i in range(int(seconds / every)):
        travelled = kmh / 3.6 * i * every
        lat, lon = offset(latitude, longitude, north * travelled, east * travelled)
        at = start + timedelta(seconds=i * every)
        if spike_every and i % spike_every == spike_every // 2:
            points.append(TracePoint(at, *_jittered(rng, lat, lon, 300, 2_000), 20.0, "spike"))
        else:
            points.append(TracePoint(at, *_jittered(rng, lat, lon, 0, 5), 8.0, "good"))
    return points


def walk_around(
    rng: random.Random, start: datetime, latitude: float, longitude: float, *, radius_m: float, seconds: float
) -> list[TracePoint]:
    """Walking round a job site at 4-6 km/h on a circle of ``radius_m``, a fix every 10 s."""
    points, angle = [], 0.0
    for i in range(int(seconds / 10)):
        angle += rng.uniform(4, 6) / 3.6 * 10 / radius_m
        lat, lon = offset(latitude, longitude, radius_m * math.cos(angle), radius_m * math.sin(angle))
        points.append(TracePoint(start + timedelta(seconds=i * 10), *_jittered(rng, lat, lon, 0, 8), 10.0, "good"))
    return points


RECORDED = Path(__file__).resolve().parent.parent / "data" / "traces"


def recorded(name: str, starting: datetime | None = None) -> list[TracePoint]:
    """A recorded trace (``tests/data/traces/``, its origin and licence in the README there), every fix of its
    tracks in file order; ``starting``: moved in time so that its first fix is then (an API takes no fix years old),
    the intervals kept."""
    document = gpxpy.parse((RECORDED / name).read_text())
    fixes = [point for track in document.tracks for segment in track.segments for point in segment.points]
    first = fixes[0].time
    assert first is not None
    shift = (starting - first) if starting is not None else timedelta(0)
    points = []
    for fix in fixes:
        assert fix.time is not None
        points.append(TracePoint((fix.time + shift).astimezone(UTC), fix.latitude, fix.longitude, 10.0, "good"))
    return points
