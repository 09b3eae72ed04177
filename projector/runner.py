"""The projector's consume loop: read a batch, apply it with its offsets in one transaction, repeat.

Kafka's committed offsets are never used: on every assignment the consumer seeks to the offsets stored with
the table, so a kill -9 at any moment neither loses nor double-applies a record. Poison records are copied
to the dead-letter topic before the batch that skips them commits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition

from domain.position import Position
from locstream.gc_tuning import tune_for_batches
from locstream.kafka import ensure_topic, make_consumer, make_producer, seek_to_offsets
from locstream.lifecycle import cancel_and_wait
from projector.backends import make_store
from projector.metrics import ProjectorMetrics
from projector.poison import Poison, dlq_headers, poison_of
from projector.settings import ProjectorSettings
from projector.store import ConcurrentWriteError, GenerationChangedError, ProjectionStore
from schemas.events import FACT_EVENTS, Event, Fact, InvalidEventError, decode_event

log = logging.getLogger(__name__)


class _SeekToStoredOffsets(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, projector: Projector) -> None:
        self._projector = projector

    async def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._projector.seek_to_stored(list(assigned))


class Projector:
    """Owns the store, the consumer and the DLQ producer; ``start()`` spawns the loop, ``stop()`` awaits it."""

    def __init__(self, settings: ProjectorSettings, store: ProjectionStore | None = None) -> None:
        self.settings = settings
        self.store = store or make_store(settings.data, settings.kafka.topic)
        self.metrics = ProjectorMetrics()
        self.generation = 0
        self._consumer: Any = None
        self._dlq: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._positions: dict[int, int] = {}  # partition -> next offset applied (or sought to)
        # A rebalance seeks from the coordinator's task: it waits for the batch being written, so the offsets it
        # seeks to include that batch's (the store also drops records below them: ``store.beyond_stored``).
        self._writing = asyncio.Lock()

    @property
    def applied(self) -> int:
        return int(self.metrics.value("applied"))

    @property
    def duplicates(self) -> int:
        return int(self.metrics.value("duplicate"))

    @property
    def skipped(self) -> int:
        return int(self.metrics.value("dead_lettered"))

    async def start(self) -> None:
        assert not self._tasks, "projector already started"
        kafka = self.settings.kafka
        await ensure_topic(kafka)
        await ensure_topic(kafka.model_copy(update={"topic": self.settings.dlq_topic}))
        await self.store.open()
        tune_for_batches(self.settings.gc_gen0_threshold)
        self.generation = await self.store.generation()
        self.metrics.generation.set(self.generation)
        self._dlq = make_producer(kafka)
        await self._dlq.start()
        self._consumer = make_consumer(kafka, group_id=self.settings.group_id, max_poll_records=self.settings.max_batch)
        await self._consumer.start()
        self._consumer.subscribe([kafka.topic], listener=_SeekToStoredOffsets(self))
        self._tasks = [
            asyncio.create_task(self._run(), name="projector-loop"),
            asyncio.create_task(self._prune_periodically(), name="projector-prune"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            await cancel_and_wait(task)
        self._tasks = []
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._dlq is not None:
            await self._dlq.stop()
            self._dlq = None
        await self.store.close()

    async def seek_to_stored(self, partitions: list[TopicPartition]) -> None:
        async with self._writing:
            await self._seek_to_stored(partitions)

    async def _seek_to_stored(self, partitions: list[TopicPartition]) -> None:
        stored = await self.store.stored_offsets(self.generation)
        fresh = await seek_to_offsets(self._consumer, partitions, stored)
        for tp in partitions:
            if tp.partition in stored:
                self._positions[tp.partition] = stored[tp.partition]
        if fresh:
            beginnings = await self._consumer.beginning_offsets(fresh)
            for tp in fresh:
                self._positions[tp.partition] = beginnings[tp]
        log.info("assigned %s, resuming at stored offsets %s", sorted(tp.partition for tp in partitions), stored)

    def lag(self) -> dict[int, int]:
        """Records behind the end, per assigned partition (from the consumer's last fetch)."""
        behind: dict[int, int] = {}
        if self._consumer is None:
            return behind
        for tp in self._consumer.assignment():
            end, position = self._consumer.highwater(tp), self._positions.get(tp.partition)
            if end is not None and position is not None:
                behind[tp.partition] = max(0, end - position)
        return behind

    def positions(self) -> dict[int, int]:
        """Next offset to apply, per currently assigned partition (what ``locstream.readiness`` watches)."""
        if self._consumer is None:
            return {}
        return {
            tp.partition: self._positions[tp.partition]
            for tp in self._consumer.assignment()
            if tp.partition in self._positions
        }

    def ready(self) -> tuple[bool, str]:
        if self._consumer is None or not self._consumer.assignment():
            return False, "no partition assigned"
        worst = max(self.lag().values(), default=0)
        if worst > self.settings.ready_max_lag:
            return False, f"lag {worst} > {self.settings.ready_max_lag}"
        return True, "ok"

    async def _run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=1000, max_records=self.settings.max_batch)
            if batches:
                try:
                    async with self._writing:
                        await self._apply(batches)
                except GenerationChangedError:
                    await self._follow_new_generation()
                except ConcurrentWriteError as exc:  # another projector wrote these partitions (a rebalance)
                    log.warning("batch not written, resuming at the stored offsets: %s", exc)
                    await self.seek_to_stored(list(self._consumer.assignment()))
            elif await self.store.generation() != self.generation:  # a rebuild switched while we were idle
                await self._follow_new_generation()

    async def _follow_new_generation(self) -> None:
        """A rebuild switched tables: continue from the offsets stored with the new ones."""
        self.generation = await self.store.generation()
        self.metrics.generation.set(self.generation)
        log.info("switched to table generation %d", self.generation)
        await self.seek_to_stored(list(self._consumer.assignment()))

    async def _apply(self, batches: dict[TopicPartition, list[Any]]) -> None:
        began = time.perf_counter()
        events: list[tuple[Event, Position]] = []
        facts: list[tuple[Fact, Position]] = []
        poisons: list[Poison] = []
        next_offsets: dict[int, int] = {}
        for tp, records in batches.items():
            partition = tp.partition
            for record in records:
                try:
                    event = decode_event(record.value)
                except InvalidEventError as exc:
                    poisons.append(poison_of(record, partition, exc))
                    continue
                if isinstance(event, FACT_EVENTS):  # facts about a technician (visits, stops, offline), not a fix
                    facts.append((event, Position(partition, record.offset)))
                else:
                    events.append((event, Position(partition, record.offset)))
            next_offsets[partition] = records[-1].offset + 1
        for poison in poisons:  # durable in the DLQ before the offsets that skip it are committed
            await self._dlq.send_and_wait(
                self.settings.dlq_topic,
                poison.value,
                key=poison.key,
                headers=dlq_headers(poison, self.settings.kafka.topic),
            )
        # In log order per partition (getmany's order); partitions hold disjoint technicians, so no sort across them.
        result = await self.store.apply_batch(events, next_offsets, self.generation, facts)
        self.metrics.count("dead_lettered", len(poisons))
        self._positions.update(next_offsets)
        self.metrics.count("applied", result.applied)
        self.metrics.count("duplicate", result.duplicates)
        for partition, lag in self.lag().items():
            self.metrics.lag.labels(str(partition)).set(lag)
        self.metrics.batch_seconds.observe(time.perf_counter() - began)

    async def _prune_periodically(self) -> None:
        retention = timedelta(days=self.settings.history_retention_days)
        while True:
            pruned = await self.store.prune_history(datetime.now(UTC) - retention)
            if pruned:
                log.info("pruned %d history events recorded more than %s ago", pruned, retention)
            await asyncio.sleep(self.settings.prune_interval_seconds)
