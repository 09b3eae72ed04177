"""Reading and writing the test topic directly, as an independent observer of what the services did."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from domain.position import Position
from locstream.kafka import ensure_compacted_topic, ensure_topic, make_consumer, make_producer
from locstream.settings import KafkaSettings
from schemas.events import Event, decode_event, encode_event
from schemas.geofences import GeofenceDefined, encode_fence_event, fence_key


async def end_offsets(kafka: KafkaSettings) -> dict[int, int]:
    partitions = await ensure_topic(kafka)
    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
        return {tp.partition: offset for tp, offset in ends.items()}
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
    producer = make_producer(kafka)
    await producer.start()
    try:
        chunk = 50
        began = time.monotonic()
        for i in range(0, len(events), chunk):
            acks = [
                await producer.send(kafka.topic, encode_event(event), key=event.tenant_id.encode())
                for event in events[i : i + chunk]
            ]
            await asyncio.gather(*acks)
            if per_second is not None:
                due = began + (i + chunk) / per_second
                await asyncio.sleep(max(0.0, due - time.monotonic()))
    finally:
        await producer.stop()


async def append(kafka: KafkaSettings, events: list[Event]) -> list[int]:
    """Append in order; the broker's append times (ms), which the topic's LogAppendTime makes the records'."""
    producer = make_producer(kafka)
    await producer.start()
    try:
        acks = [await producer.send(kafka.topic, encode_event(e), key=e.tenant_id.encode()) for e in events]
        return [metadata.timestamp for metadata in await asyncio.gather(*acks)]
    finally:
        await producer.stop()


async def clock_past(ms: int) -> None:
    """Until this machine's clock (the broker's too) is past ``ms``: the next append is later than every one so far.
    The condition is the clock itself, so this waits for the time left."""
    await asyncio.sleep(max(0.0, (ms + 2) / 1000 - time.time()))
    assert time.time() * 1000 > ms


async def define_fences(kafka: KafkaSettings, fences: list[GeofenceDefined]) -> None:
    """Append fence definitions to the fences topic, as the ingest API would, and wait for every ack."""
    await ensure_compacted_topic(kafka, kafka.geofences_topic)
    producer = make_producer(kafka)
    await producer.start()
    try:
        acks = [
            await producer.send(kafka.geofences_topic, encode_fence_event(f), key=fence_key(f.tenant_id, f.geofence_id))
            for f in fences
        ]
        await asyncio.gather(*acks)
    finally:
        await producer.stop()
