"""Exactly once in effect: the derived-facts processor killed with SIGKILL 20 times at random moments while 50,000
fixes over 1,000 fences stream in appends the same crossings, stops and trips as one uninterrupted run over the same
input; what a killed batch appended again carries the same event ids, so each counts once."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from bench.geofencing import workload
from locstream.kafka import ensure_topic
from locstream.settings import KafkaSettings
from schemas.events import (
    Derived,
    GeofenceEntered,
    GeofenceExited,
    StopEnded,
    StopStarted,
    TripEnded,
    TripStarted,
)
from tests.support.kafka_io import define_fences, produce, read_all
from tests.support.processors import caught_up, derived, stored_offsets
from tests.support.stack import Service, Stack, eventually

pytestmark = pytest.mark.integration

KILLS = 20


async def test_twenty_kill_9s_append_the_derived_events_of_one_uninterrupted_run_each_once(
    stack: Stack, kafka: KafkaSettings, tmp_path: Path
) -> None:
    load = workload(tenants=4, fences_per_tenant=250, technicians_per_tenant=50, fixes_per_technician=250, seed=19)
    assert len(load.fences) == 1_000 and len(load.fixes) == 50_000
    reference = kafka.model_copy(update={"topic": kafka.topic + ".reference"})
    await define_fences(kafka, load.fences)
    for target in (reference, kafka):
        await ensure_topic(target)
    await produce(reference, list(load.fixes))

    def env(target: KafkaSettings, data_dir: Path) -> dict[str, str]:
        return {
            "KAFKA_TOPIC": target.topic,
            "LOCSTREAM_DATA_DIR": str(data_dir),
            "LOCSTREAM_GEOFENCER_START_FROM": "beginning",
            "LOCSTREAM_GEOFENCER_MAX_BATCH": "500",
        }

    uninterrupted_dir = tmp_path / "uninterrupted"
    await stack.start("geofencer", env=env(reference, uninterrupted_dir))
    killed_dir = tmp_path / "killed"
    # The same fixes, streamed over about 62 s while the processor is killed and started again and again (a start
    # joins the group before it is ready: up to 3.7 s a cycle in a loaded CI pass, and most kills must fall mid-work).
    stream = asyncio.create_task(produce(kafka, list(load.fixes), per_second=800))
    rng = random.Random(20)
    progress: list[int] = []
    for _ in range(KILLS):
        service: Service = await stack.start("geofencer", env=env(kafka, killed_dir))
        await asyncio.sleep(rng.uniform(0.05, 0.8))  # a random moment of its work: what is killed is the point
        service.kill9()
        progress.append(sum(stored_offsets(killed_dir).values()))
    await stack.start("geofencer", env=env(kafka, killed_dir))
    await stream
    await eventually(lambda: caught_up([uninterrupted_dir], reference), timeout=240, what="the uninterrupted run")
    await eventually(lambda: caught_up([killed_dir], kafka), timeout=240, what="the killed run to catch up")

    fixes_total = len(load.fixes)
    assert progress == sorted(progress) and progress[0] < progress[-1], progress  # the kills fell along the way
    assert sum(1 for p in progress if p < fixes_total) >= KILLS // 2, progress  # most of them mid-work
    expected = derived([e for e, _ in await read_all(reference)])
    found = derived([e for e, _ in await read_all(kafka)])
    # The workload crosses fences often and stops now and then: the comparison could fail for each kind.
    assert sum(isinstance(e, GeofenceEntered | GeofenceExited) for e in expected) > 1_000
    for kind in (StopStarted, StopEnded, TripStarted, TripEnded):
        assert sum(isinstance(e, kind) for e in expected) >= 10, kind
    assert len({e.event_id for e in expected}) == len(expected)  # an uninterrupted run appends each once
    first_seen: dict[object, Derived] = {}
    for event in found:
        held = first_seen.setdefault(event.event_id, event)
        assert held == event, "a repeated event must be the same event"
    assert list(first_seen.values()) == expected  # the same events, each once, in the same order
