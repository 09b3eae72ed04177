"""Scale-out: two derived-facts processors share the location topic's partitions in one consumer group. One is
killed with SIGKILL mid-batch; the other takes its partitions over, their state restored from the changelog; a third
with an empty store joins and takes some back, restored again. Every derived event is still appended exactly once in
effect: the same events, with the same ids and contents, as one uninterrupted processor over the same input. And one
that stalls past its session (SIGSTOP) while the other takes over appends nothing to the changelog after it."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from pathlib import Path

import httpx
import pytest
from aiokafka import TopicPartition

from bench.geofencing import Workload, workload
from domain.partitioning import tenant_partition
from geofencer.changelog import WRITER_HEADER, decode, topic_of
from locstream.kafka import admin_client, ensure_topic, make_consumer, metadata
from locstream.settings import KafkaSettings
from schemas.events import Derived, GeofenceEntered, StopStarted, TripEnded
from tests.support.kafka_io import define_fences, produce, read_all
from tests.support.processors import caught_up, derived, metric, stored_offsets
from tests.support.stack import Service, Stack, eventually

pytestmark = pytest.mark.integration


async def _partitions(service: Service) -> list[int] | None:
    """The partitions the processor reads now (its /healthz), None before the group gave it its share."""
    async with httpx.AsyncClient(timeout=10) as http:
        health = (await http.get(f"{service.url}/healthz")).json()
    return list(health["partitions"]) if health.get("ready") else None


async def test_a_processor_killed_mid_batch_hands_its_partitions_over_and_every_event_is_derived_once(
    stack: Stack, kafka: KafkaSettings, tmp_path: Path
) -> None:
    load = workload(tenants=6, fences_per_tenant=150, technicians_per_tenant=30, fixes_per_technician=200, seed=32)
    spread = {tenant_partition(f"tenant-{t}", kafka.partitions) for t in range(6)}
    assert len(spread) >= 3, spread  # the tenants fill several partitions: there is something to share
    reference = kafka.model_copy(update={"topic": kafka.topic + ".reference"})
    alone = await _fill_reference(stack, kafka, load, reference, tmp_path)

    one, two, stream, mine = await _pair_sharing(stack, kafka, load, tmp_path)
    first, second = tmp_path / "first", tmp_path / "second"
    one.kill9()  # mid-batch: fixes stream in at 1,500/s in batches of up to 500
    killed_at = sum(stored_offsets(first).values())
    assert 0 < killed_at < len(load.fixes), killed_at

    await eventually(lambda: _holds_all(two, kafka), timeout=60, what="the second processor to take every partition")
    restored = await metric(two, "locstream_geofencer_restored_partitions_total")
    assert restored >= len(set(mine) & spread), restored  # the first one's partitions with state came from the log

    # A third processor with an empty store joins: the group gives it some partitions, which it restores too.
    third = await stack.start("geofencer", env=_env(kafka, tmp_path / "third", "pair"))

    async def rebalanced() -> list[int] | None:
        return await _partitions(third) or None

    await eventually(rebalanced, timeout=60, what="the third processor to get some partitions")
    await stream

    await eventually(lambda: caught_up([alone], reference), timeout=240, what="the uninterrupted run")
    await eventually(
        lambda: caught_up([first, second, tmp_path / "third"], kafka), timeout=240, what="the three to catch up"
    )
    assert await metric(third, "locstream_geofencer_restored_partitions_total") >= 1

    expected = derived([e for e, _ in await read_all(reference)])
    for kind in (StopStarted, TripEnded):  # crossings are counted by the comparison itself
        assert sum(isinstance(e, kind) for e in expected) >= 5, kind
    await _assert_derived_once(reference, kafka)


async def _pair_sharing(
    stack: Stack, kafka: KafkaSettings, load: Workload, tmp_path: Path
) -> tuple[Service, Service, asyncio.Task[None], list[int]]:
    """Two processors in one group (stores in ``first`` and ``second``) while the fixes stream in at 1,500/s,
    returned once both read some partitions and the first has committed batches of its own: the two, the stream,
    the first one's partitions."""
    first, second = tmp_path / "first", tmp_path / "second"
    one = await stack.start("geofencer", env=_env(kafka, first, "pair"))
    stream = asyncio.create_task(produce(kafka, list(load.fixes), per_second=1_500))
    two = await stack.start("geofencer", env=_env(kafka, second, "pair"))

    async def shared() -> tuple[list[int], list[int]] | None:
        mine, theirs = await _partitions(one), await _partitions(two)
        return (mine, theirs) if mine and theirs else None

    mine, theirs = await eventually(shared, timeout=60, what="both processors to read some partitions")
    assert set(mine).isdisjoint(theirs)
    await eventually(lambda: _progress_in(first, mine), timeout=60, what="the first to commit batches of its own")
    return one, two, stream, mine


async def _holds_all(service: Service, kafka: KafkaSettings) -> bool:
    return sorted(await _partitions(service) or []) == list(range(kafka.partitions))


async def _progress_in(data_dir: Path, partitions: list[int]) -> bool:
    stored = stored_offsets(data_dir)
    return any(stored.get(p, 0) > 0 for p in partitions)


def _env(target: KafkaSettings, data_dir: Path, group: str) -> dict[str, str]:
    return {
        "KAFKA_TOPIC": target.topic,
        "LOCSTREAM_DATA_DIR": str(data_dir),
        "LOCSTREAM_GEOFENCER_START_FROM": "beginning",
        "LOCSTREAM_GEOFENCER_MAX_BATCH": "500",
        "LOCSTREAM_GEOFENCER_GROUP_ID": group,
        "LOCSTREAM_GEOFENCER_SESSION_TIMEOUT_SECONDS": "6",
    }


async def _assert_derived_once(reference: KafkaSettings, kafka: KafkaSettings) -> None:
    expected = derived([e for e, _ in await read_all(reference)])
    found = derived([e for e, _ in await read_all(kafka)])
    assert sum(isinstance(e, GeofenceEntered) for e in expected) >= 10
    first_seen: dict[object, Derived] = {}
    for event in found:
        assert first_seen.setdefault(event.event_id, event) == event, "a repeated event must be the same event"
    assert list(first_seen.values()) == expected


async def _writers(kafka: KafkaSettings) -> dict[int, list[tuple[str, str]]]:
    """Each changelog partition's records in log order: the member that appended each, and its table."""
    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    try:
        topic = topic_of(kafka.topic)
        partitions = [TopicPartition(topic, p) for p in range(kafka.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: dict[int, list[tuple[str, str]]] = {p.partition: [] for p in partitions}
        remaining = {tp for tp, end in ends.items() if end > 0}
        while remaining:
            for tp, records in (await consumer.getmany(*remaining, timeout_ms=1_000)).items():
                found[tp.partition].extend(
                    (dict(r.headers)[WRITER_HEADER].decode(), decode(r.key, r.value).table) for r in records
                )
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
        return found
    finally:
        await consumer.stop()


async def _fill_reference(
    stack: Stack, kafka: KafkaSettings, load: Workload, reference: KafkaSettings, tmp_path: Path
) -> Path:
    """The fences, both topics, the fixes on the reference topic, and one uninterrupted processor reading them (a
    group of its own); its data dir."""
    await define_fences(kafka, load.fences)
    for target in (reference, kafka):
        await ensure_topic(target)
    await produce(reference, list(load.fixes))
    alone = tmp_path / "alone"
    await stack.start("geofencer", env=_env(reference, alone, "alone"))
    return alone


async def test_a_processor_stalled_past_its_session_never_writes_unseen_after_its_successor(
    stack: Stack, kafka: KafkaSettings, tmp_path: Path
) -> None:
    load = workload(tenants=6, fences_per_tenant=100, technicians_per_tenant=20, fixes_per_technician=200, seed=33)
    reference = kafka.model_copy(update={"topic": kafka.topic + ".reference"})
    alone = await _fill_reference(stack, kafka, load, reference, tmp_path)
    one, two, stream, mine = await _pair_sharing(stack, kafka, load, tmp_path)
    first, second = tmp_path / "first", tmp_path / "second"
    os.kill(one.process.pid, signal.SIGSTOP)  # mid-batch, its commit under way: frozen past its 6 s session
    try:  # a take appends who took each partition to its changelog
        await eventually(
            lambda: _holds_all(two, kafka), timeout=60, what="the second processor to take every partition"
        )
    finally:
        os.kill(one.process.pid, signal.SIGCONT)  # it finishes what it was doing, then hears it is out
    await stream
    await eventually(lambda: caught_up([alone], reference), timeout=240, what="the uninterrupted run")
    await eventually(lambda: caught_up([first, second], kafka), timeout=240, what="the pair to catch up")

    await _assert_derived_once(reference, kafka)
    services = {_member(first): one, _member(second): two}
    handovers = 0
    for partition in mine:
        holder = None
        for writer, table in (await _writers(kafka))[partition]:
            if writer == holder:
                continue
            if table == "owners":  # a take: the new holder says so first
                holder, handovers = writer, handovers + 1
                continue
            # A write by a member that did not take the partition last: the stalled one, between its check and its
            # append. The holder must have seen it (and taken the partition again, restored with that write).
            assert holder is not None and "were written by another instance" in services[holder].log(), partition
            holder = writer
    assert handovers >= 2 * len(mine)  # each of the first's partitions went to it, then to the second at least


def _member(data_dir: Path) -> str:
    with sqlite3.connect(f"file:{data_dir / 'geofencer.sqlite3'}?mode=ro", uri=True) as db:
        (member,) = db.execute("SELECT id FROM identity").fetchone()
    return str(member)


async def test_a_store_from_before_the_changelog_seeds_it_and_a_successor_restores_from_the_seed(
    stack: Stack, kafka: KafkaSettings, tmp_path: Path
) -> None:
    """An upgrade: a processor whose state is only in its store (here: its changelog topic deleted) writes its rows
    to a new changelog when it takes its partitions; killed, its successor with an empty store restores them from
    that seed and goes on: every event still once in effect."""
    load = workload(tenants=4, fences_per_tenant=100, technicians_per_tenant=20, fixes_per_technician=150, seed=34)
    reference = kafka.model_copy(update={"topic": kafka.topic + ".reference"})
    alone = await _fill_reference(stack, kafka, load, reference, tmp_path)
    half = len(load.fixes) // 2
    first, second = tmp_path / "first", tmp_path / "second"
    one = await stack.start("geofencer", env=_env(kafka, first, "pair"))
    await produce(kafka, list(load.fixes[:half]))
    await eventually(lambda: caught_up([first], kafka), timeout=120, what="the first half read")
    one.process.send_signal(signal.SIGTERM)
    await asyncio.to_thread(one.process.wait, 30)
    await _delete_topic(kafka, topic_of(kafka.topic))  # the state is in the store alone now, as before the changelog

    one = await stack.start("geofencer", env=_env(kafka, first, "pair"))
    assert "seeded the changelog of partition" in one.log()
    await produce(kafka, list(load.fixes[half : half + half // 2]))
    await eventually(lambda: caught_up([first], kafka), timeout=120, what="more read on the seeded changelog")
    one.kill9()
    two = await stack.start("geofencer", env=_env(kafka, second, "pair"))
    await eventually(lambda: _holds_all(two, kafka), timeout=60, what="the successor to take every partition")
    assert await metric(two, "locstream_geofencer_restored_partitions_total") >= 1
    await produce(kafka, list(load.fixes[half + half // 2 :]))
    await eventually(lambda: caught_up([alone], reference), timeout=240, what="the uninterrupted run")
    await eventually(lambda: caught_up([first, second], kafka), timeout=240, what="the successor to catch up")
    await _assert_derived_once(reference, kafka)


async def _delete_topic(kafka: KafkaSettings, name: str) -> None:
    """Delete ``name`` and wait until the brokers no longer know it."""
    admin = admin_client(kafka)
    await admin.start()
    try:
        await admin.delete_topics([name])

        async def gone() -> bool:
            (topic,) = (await metadata(admin, [name]))["topics"]
            return bool(topic["error_code"] == 3)  # UNKNOWN_TOPIC_OR_PARTITION

        await eventually(gone, timeout=30, what=f"{name} deleted")
    finally:
        await admin.close()
