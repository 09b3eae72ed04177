"""The derived-facts processor's state, as a log: the changelog topic its store is restored from when a partition
of the location topic moves to another instance (docs/scale-out.md).

Every commit of the store (``geofencer.state.Write``: a row put or deleted) is first appended here, to the changelog
partition of the location topic's partition the row belongs to, keyed by its table and primary key (so compaction
keeps each row's latest value, a deletion being a tombstone), and acknowledged; only then applied to the local store
with the changelog's new end offsets (``state.changelog`` table). On an assignment, a store whose end offset for the
partition is the changelog's own is current (no one else wrote since); any other one rebuilds that partition's rows
from the changelog read to its end (``Changelog.read``, ``GeofencerState.replace_partition``).

A crash between the append and the local commit leaves the changelog ahead of the local store: the next owner
restores the changelog's rows (its offsets included, so it resumes where they say), and reprocesses nothing the
rows have not taken; a crash mid-append, the rows ahead of their offset for some technicians, which every rule
takes again as a repeat (docs/scale-out.md#why-no-transactions).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import msgspec
from aiokafka import TopicPartition

from geofencer.state import Write
from locstream.kafka import SentBatch, ensure_compacted_topic_of, make_consumer, send_batches
from locstream.settings import KafkaSettings

log = logging.getLogger(__name__)

# Compaction runs on closed segments only: a segment is closed after 10 minutes (or 64 MiB), so a restore reads at
# most about that much beyond each row's latest value.
TOPIC_CONFIGS = {"segment.ms": "600000", "segment.bytes": str(64 * 1024 * 1024), "min.cleanable.dirty.ratio": "0.25"}

WRITER_HEADER = "writer"  # the group member id of the instance that appended a record

_encoder = msgspec.msgpack.Encoder()


def encode(write: Write) -> tuple[bytes, bytes | None]:
    """Key (the table and the row's primary key) and value (the row, or None: a tombstone) of a write."""
    key = _encoder.encode([write.table, *write.key])
    return key, None if write.row is None else _encoder.encode(write.row)


def decode(key: bytes, value: bytes | None) -> Write:
    table, *row_key = msgspec.msgpack.decode(key)
    row = None if value is None else tuple(msgspec.msgpack.decode(value))
    return Write(str(table), tuple(row_key), row)


def topic_of(location_topic: str) -> str:
    return f"{location_topic}.derived-state"


class Changelog:
    """The changelog topic of one location topic: ``start(partitions)`` creates it if missing (as many partitions as
    the location topic) and starts its reader; ``append`` writes with the processor's producer; ``stop()`` closes."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self.topic = topic_of(kafka.topic)
        self.partition_count = 0
        self._reader: Any = None

    async def start(self, partition_count: int) -> None:
        await ensure_compacted_topic_of(self.kafka, self.topic, partition_count, TOPIC_CONFIGS)
        self.partition_count = partition_count
        self._reader = make_consumer(  # reads to a known end: no use waiting for more
            self.kafka, group_id=None, max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_wait_ms=50
        )
        await self._reader.start()

    async def stop(self) -> None:
        if self._reader is not None:
            await self._reader.stop()
            self._reader = None

    def by_partition(self, writes: Sequence[Write]) -> dict[int, list[Write]]:
        """``writes`` per changelog partition (their location partition's), each list in order."""
        grouped: dict[int, list[Write]] = {}
        for write in writes:
            grouped.setdefault(write.partition(self.partition_count), []).append(write)
        return grouped

    async def append(self, producer: Any, by_partition: dict[int, list[Write]], writer: str) -> list[SentBatch]:
        """Hand the writes (``by_partition``) to ``producer`` in record batches per changelog partition, in order,
        each record naming its ``writer`` (a header); ``acknowledged_ends`` of the answer waits for them."""
        records = {partition: (encode(write) for write in held) for partition, held in by_partition.items()}
        return await send_batches(producer, self.topic, records, [(WRITER_HEADER, writer.encode())])

    async def end_offsets(self, partitions: Sequence[int]) -> dict[int, int]:
        tps = [TopicPartition(self.topic, p) for p in partitions]
        ends = await self._reader.end_offsets(tps)
        return {tp.partition: int(offset) for tp, offset in ends.items()}

    async def read(self, ends: dict[int, int]) -> dict[int, list[Write]]:
        """Every record of each changelog partition below its end in ``ends``, as writes in log order; the
        partitions read together (the reader is assigned them)."""
        tps = {TopicPartition(self.topic, partition): end for partition, end in ends.items() if end > 0}
        found: dict[int, list[Write]] = {partition: [] for partition in ends}
        if not tps:
            return found
        self._reader.assign(list(tps))
        await self._reader.seek_to_beginning(*tps)
        remaining = set(tps)
        while remaining:
            batches = await self._reader.getmany(*remaining, timeout_ms=1_000)
            for tp, records in batches.items():
                end = tps[tp]
                found[tp.partition].extend(decode(r.key, r.value) for r in records if r.offset < end)
            remaining = {tp for tp in remaining if await self._reader.position(tp) < tps[tp]}
        return found
