"""The projector's consume loop: read a batch, apply it with its offsets in one transaction, repeat.

Kafka's committed offsets are never used: on every assignment the consumer seeks to the offsets stored
in the projection database, so a kill -9 at any moment neither loses nor double-applies a record.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from pydantic import ValidationError

from locstream.kafka import ensure_topic, make_consumer
from locstream.lifecycle import cancel_and_wait
from projector.apply import Position
from projector.settings import ProjectorSettings
from projector.store import SqliteProjectionStore
from schemas.events import Event, decode_event

log = logging.getLogger(__name__)


class _SeekToStoredOffsets(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, projector: Projector) -> None:
        self._projector = projector

    async def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._projector.seek_to_stored(list(assigned))


class Projector:
    """Owns the store and the consumer; ``start()`` spawns the loop, ``stop()`` ends and awaits it."""

    def __init__(self, settings: ProjectorSettings) -> None:
        self.settings = settings
        self.store = SqliteProjectionStore(settings.data.projection_db, settings.kafka.topic)
        self.applied = 0
        self.skipped = 0
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        assert self._task is None, "projector already started"
        await ensure_topic(self.settings.kafka)
        await self.store.open()
        self._consumer = make_consumer(
            self.settings.kafka, group_id=self.settings.group_id, max_poll_records=self.settings.max_batch
        )
        await self._consumer.start()
        self._consumer.subscribe([self.settings.kafka.topic], listener=_SeekToStoredOffsets(self))
        self._task = asyncio.create_task(self._run(), name="projector-loop")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        await self.store.close()

    async def seek_to_stored(self, partitions: list[TopicPartition]) -> None:
        stored = await self.store.stored_offsets()
        for tp in partitions:
            if tp.partition in stored:
                self._consumer.seek(tp, stored[tp.partition])
            else:
                await self._consumer.seek_to_beginning(tp)
        log.info("assigned %s, resuming at stored offsets %s", sorted(tp.partition for tp in partitions), stored)

    async def _run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=1000, max_records=self.settings.max_batch)
            if batches:
                await self._apply(batches)

    async def _apply(self, batches: dict[TopicPartition, list[Any]]) -> None:
        events: list[tuple[Event, Position]] = []
        next_offsets: dict[int, int] = {}
        for tp, records in batches.items():
            for record in records:
                try:
                    events.append((decode_event(record.value), Position(tp.partition, record.offset)))
                except ValidationError as exc:
                    self.skipped += 1
                    log.warning(
                        "skipping undecodable record at %s/%d: %s",
                        tp.partition,
                        record.offset,
                        exc.errors(include_input=False)[:1],
                    )
            next_offsets[tp.partition] = records[-1].offset + 1
        events.sort(key=lambda item: item[1])  # per partition in log order; partitions hold disjoint tenants
        await self.store.apply_batch(events, next_offsets)
        self.applied += len(events)
