"""A table kept as a compacted one-partition topic (the devices, the geofences), followed by every process that
needs it: ``start()`` reads the topic from its beginning to its end before the process serves, then a task of its
own applies each later record as it comes (well under 2 s after it is appended, through any process).

``append`` writes a record (acks=all) and returns once this process's own follower has applied it, so whoever
changed the table sees the change at once through the same process. No group, no committed offsets, no database.

``Registry`` is what each such table is to the rest of the code: its events decoded and folded into a book of
its own (``locstream/devices.py``, ``locstream/fences.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import msgspec
from aiokafka import TopicPartition

from locstream.kafka import ensure_compacted_topic, make_consumer, make_producer
from locstream.lifecycle import cancel_and_wait
from locstream.settings import KafkaSettings

log = logging.getLogger(__name__)
E = TypeVar("E")


class CompactedTopic:
    """Owns the topic's consumer and producer; ``apply(value)`` is called for each record, in log order, from
    the follower (it must not block; a value it cannot read it logs and passes over)."""

    def __init__(self, kafka: KafkaSettings, topic: str, apply: Callable[[bytes], None]) -> None:
        self.kafka, self.topic, self.apply = kafka, topic, apply
        self.ready = asyncio.Event()
        self._partition: TopicPartition | None = None
        self._consumer: Any = None
        self._producer: Any = None
        self._task: asyncio.Task[None] | None = None
        self._applied = -1  # offset of the last record applied
        self._advanced = asyncio.Event()

    async def start(self) -> None:
        assert self._task is None, f"{self.topic} follower already started"
        self._partition = await ensure_compacted_topic(self.kafka, self.topic)
        self._consumer = make_consumer(self.kafka, group_id=None, fetch_max_wait_ms=200)
        await self._consumer.start()
        self._consumer.assign([self._partition])
        await self._consumer.seek_to_beginning(self._partition)
        end = (await self._consumer.end_offsets([self._partition]))[self._partition]
        self._producer = make_producer(self.kafka, compression_type=None)
        await self._producer.start()
        self._task = asyncio.create_task(self._follow(), name=f"follow-{self.topic}")
        await self._reach(end - 1)
        self.ready.set()
        log.info("%s: %d records read", self.topic, end)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        for client in (self._consumer, self._producer):
            if client is not None:
                await client.stop()
        self._consumer = self._producer = None

    async def _follow(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=1_000)
            for records in batches.values():
                for record in records:
                    if record.value is not None:  # a tombstone: compaction's deletion marker, nothing to apply
                        self.apply(record.value)
                    self._applied = record.offset
            if batches:
                self._advanced.set()
                self._advanced = asyncio.Event()

    async def _reach(self, offset: int) -> None:
        while self._applied < offset:
            await self._advanced.wait()

    async def append(self, key: bytes, value: bytes) -> None:
        """Write a record and wait (10 s at most: TimeoutError) until this process has applied it."""
        metadata = await self._producer.send_and_wait(self.topic, value, key=key)
        async with asyncio.timeout(10):
            await self._reach(metadata.offset)


class Registry(Generic[E]):
    """A compacted topic's events (``decode``d; one that cannot be is logged and passed over) folded by ``fold``,
    which a registry defines, into what it keeps. ``ready`` once the topic was read to its end at start."""

    def __init__(self, kafka: KafkaSettings, topic: str, decode: Callable[[bytes], E]) -> None:
        self.kafka = kafka
        self.decode = decode
        self.table = CompactedTopic(kafka, topic, self._apply)
        self.ready = self.table.ready

    async def start(self) -> None:
        await self.table.start()

    async def stop(self) -> None:
        await self.table.stop()

    def _apply(self, value: bytes) -> None:
        try:
            event = self.decode(value)
        except msgspec.MsgspecError:
            log.warning("%s: skipping an undecodable record", self.table.topic)
            return
        self.fold(event, value)

    def fold(self, event: E, value: bytes) -> None:
        raise NotImplementedError
