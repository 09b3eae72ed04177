"""Reading and writing the test topic directly, as an independent observer of what the services did."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from domain.position import Position
from locstream.fences import fence_records
from locstream.kafka import append_records, ensure_compacted_topic, ensure_topic, event_records, make_consumer
from locstream.settings import KafkaSettings
from schemas.events import Event, decode_event
from schemas.geofences import GeofenceDefined


async def end_offsets(kafka: KafkaSettings) -> dict[int, int]:
    partitions = await ensure_topic(kafka)
    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def compacted_records(kafka: KafkaSettings, topic: str) -> int:
    """How many records a compacted table's topic (fences, rules...) has ever taken: its end offset."""
    partition = await ensure_compacted_topic(kafka, topic)
    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    try:
        return int((await consumer.end_offsets([partition]))[partition])
    finally:
        await consumer.stop()


async def compacted_values(kafka: KafkaSettings, topic: str) -> list[bytes]:
    """Every record value a compacted table's topic holds, in log order (tombstones left out)."""
    partition = await ensure_compacted_topic(kafka, topic)
    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    try:
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        end = int((await consumer.end_offsets([partition]))[partition])
        values: list[bytes] = []
        while await consumer.position(partition) < end:
            for records in (await consumer.getmany(partition, timeout_ms=1_000)).values():
                values.extend(record.value for record in records if record.value is not None)
        return values
    finally:
        await consumer.stop()


async def read_all(kafka: KafkaSettings) -> list[tuple[Event, Position]]:
    """Every event on the topic, per partition in log order."""
    partitions = await ensure_topic(kafka)
    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp, end in ends.items() if end > 0}
        found: list[tuple[Event, Position]] = []
        while remaining:
            batches: dict[Any, list[Any]] = await consumer.getmany(timeout_ms=1000)
            for tp, records in batches.items():
                found.extend((decode_event(r.value), Position(tp.partition, r.offset)) for r in records)
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
        found.sort(key=lambda item: item[1])
        return found
    finally:
        await consumer.stop()


async def produce(kafka: KafkaSettings, events: list[Event], *, per_second: float | None = None) -> None:
    """Append ``events`` in order, at ``per_second`` when given (a steady stream), and wait for every ack."""
    await append_records(kafka, event_records(kafka, events), per_second=per_second)


async def append(kafka: KafkaSettings, events: list[Event]) -> list[int]:
    """Append in order; the broker's append times (ms), which the topic's LogAppendTime makes the records'."""
    return [metadata.timestamp for metadata in await append_records(kafka, event_records(kafka, events))]


async def clock_past(ms: int) -> None:
    """Until this machine's clock (the broker's too) is past ``ms``: the next append is later than every one so far.
    The condition is the clock itself, so this waits for the time left."""
    await asyncio.sleep(max(0.0, (ms + 2) / 1000 - time.time()))
    assert time.time() * 1000 > ms


async def define_fences(kafka: KafkaSettings, fences: list[GeofenceDefined]) -> None:
    """Append fence definitions to the fences topic, as the ingest API would, and wait for every ack."""
    await ensure_compacted_topic(kafka, kafka.geofences_topic)
    await append_records(kafka, fence_records(kafka, fences))
