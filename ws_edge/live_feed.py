"""The edge's feed: bootstrap the view from the projector's table, then follow the topic from its offsets.

The table and its offsets are read in one transaction, so "state at offset N" plus "every record from N"
is the whole history with no gap and no double count. The edge has its own consumer with no group: every
edge node reads every partition. ``ready`` is set once the feed has reached the end offsets the topic had
at start-up, so the first initial_state already contains everything Kafka had acknowledged by then.

Partitions take turns (``RECORDS_PER_ROUND``): one tenant's backlog does not hold up another partition's records.

Every update the feed publishes carries its cursor (epoch, the tenant's partition, the record's offset) and goes
into the resume buffer as well as to the fan-out, in the same step. ``cursor_of(tenant)`` is where the tenant's
stream stands now: the cursor of an initial_state taken at this moment.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import TopicPartition

from domain.partitioning import tenant_partition
from domain.position import Position
from locstream.kafka import ensure_topic, make_consumer, seek_to_offsets
from locstream.lifecycle import cancel_and_wait
from projector.backends import make_store
from schemas.cursor import Cursor
from schemas.events import (
    GeofenceEntered,
    GeofenceExited,
    InvalidEventError,
    LocationRecorded,
    decode_event,
)
from ws_edge import messages
from ws_edge.fanout import Fanout
from ws_edge.settings import EdgeSettings
from ws_edge.view import LiveView

log = logging.getLogger(__name__)

# Records of one partition applied before the other partitions get theirs. aiokafka hands out a partition's fetched
# records before the next partition's: a tenant's burst at its rate limit (15,000 records fetched at once) made
# another tenant's next fix wait 0.3 to 0.5 s behind it, on the same edge, in another partition. Taking each
# partition's next few in turn, with a turn of the loop between rounds, keeps that wait to one round's work.
RECORDS_PER_ROUND = 250


class LiveFeed:
    """Owns the edge's consumer: ``start()`` bootstraps and spawns the loop, ``stop()`` ends and awaits it."""

    def __init__(self, settings: EdgeSettings, view: LiveView, fanout: Fanout) -> None:
        self.settings = settings
        self.view = view
        self.fanout = fanout
        self.ready = asyncio.Event()
        self.skipped = 0
        self.epoch = settings.kafka.topic_epoch
        self.floor: dict[int, int] = {}  # partition -> offset from which this edge has applied every record
        self.applied: dict[int, int] = {}  # partition -> offset of the last record applied (floor - 1 before any)
        self._partition_count = 0
        self._partitions: dict[str, int] = {}  # tenant -> partition, as the producers' partitioner places it
        self._advanced = asyncio.Event()
        self._shard = frozenset(settings.tenants)
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None
        self._catch_up: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        assert self._task is None, "live feed already started"
        kafka = self.settings.kafka
        partitions = await ensure_topic(kafka)
        store = make_store(self.settings.data, kafka.topic)
        await store.open()
        try:
            snapshot = await store.snapshot()
        finally:
            await store.close()
        partition_count = self._partition_count = len(partitions)  # (partition_of, just below, places tenants by it)
        shard = self._shard
        if shard:  # a tenant shard: only its tenants' partitions, and only its tenants in the view
            served = {self.partition_of(tenant) for tenant in shard}
            partitions = [tp for tp in partitions if tp.partition in served]
            self.view.load(state for state in snapshot.states if state.tenant_id in shard)
        else:
            self.view.load(snapshot.states)
        self.position(partition_count, {tp.partition: snapshot.offsets.get(tp.partition, 0) for tp in partitions})
        self._consumer = make_consumer(kafka, group_id=None)
        await self._consumer.start()
        self._consumer.assign(partitions)
        await seek_to_offsets(self._consumer, partitions, snapshot.offsets)
        end_offsets = await self._consumer.end_offsets(partitions)
        self._catch_up = {tp: end for tp, end in end_offsets.items() if end > snapshot.offsets.get(tp.partition, 0)}
        log.info(
            "bootstrapped %d technicians at offsets %s; catching up to %s",
            len(snapshot.states),
            snapshot.offsets,
            {tp.partition: end for tp, end in self._catch_up.items()},
        )
        self._check_caught_up()
        self._task = asyncio.create_task(self._run(), name="edge-live-feed")

    def position(self, partition_count: int, floors: dict[int, int]) -> None:
        """Where the feed starts: the topic's partition count, and for each partition it serves the offset from which
        it applies every record (the projector's snapshot's). ``start`` sets it; a test of sessions without Kafka
        sets it alone (with ``ready``)."""
        self._partition_count = partition_count
        self.floor = dict(floors)
        self.applied = {partition: offset - 1 for partition, offset in self.floor.items()}

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def _run(self) -> None:
        consumer = self._consumer
        partitions = list(consumer.assignment())
        while True:
            batches = await consumer.getmany(timeout_ms=1000, max_records=RECORDS_PER_ROUND)
            while True:  # rounds until what was fetched is applied: each partition's next records, in turn
                if batches:
                    for tp, records in batches.items():
                        self._apply(tp, records)
                    self.fanout.wake()
                    self._advanced.set()
                    self._advanced = asyncio.Event()
                if self._catch_up:  # every round: a stream that never pauses must not keep the edge from ready
                    for tp in list(self._catch_up):
                        if await consumer.position(tp) >= self._catch_up[tp]:
                            del self._catch_up[tp]
                    self._check_caught_up()
                if not batches:
                    break
                await asyncio.sleep(0)  # a turn of the loop between two rounds: sockets are read and written
                batches = {}
                for tp in partitions:
                    batches.update(await consumer.getmany(tp, timeout_ms=0, max_records=RECORDS_PER_ROUND))

    def _apply(self, tp: TopicPartition, records: list[Any]) -> None:
        """Apply and publish without awaiting: a subscriber sees either the state before or the update."""
        for record in records:
            try:
                event = decode_event(record.value)
            except InvalidEventError:
                self.skipped += 1
                log.warning("skipping undecodable record at %s/%d", tp.partition, record.offset)
                continue
            self.applied[tp.partition] = record.offset
            if not self.serves(event.tenant_id):  # another tenant of a partition this shard shares
                continue
            if isinstance(event, GeofenceEntered | GeofenceExited):
                frame = self.view.crossing(event)
                if frame is not None:
                    self.fanout.notify(event.tenant_id, event.technician_id, frame, self.floor[tp.partition])
                continue
            location = self.view.apply(event, Position(tp.partition, record.offset))
            if location is not None:
                backfill = isinstance(event, LocationRecorded) and event.data.backfill
                cursor = Cursor(self.epoch, tp.partition, record.offset).encode()
                received_at = event.received_at.timestamp()
                update = messages.update(location, record.offset, cursor, backfill=backfill, received_at=received_at)
                self.fanout.publish(event.tenant_id, update, self.floor[tp.partition])

    def lag(self) -> dict[int, int]:
        """Per partition, records between the end the consumer last heard of and what the feed applied."""
        if self._consumer is None:
            return {}
        ends = {tp.partition: self._consumer.highwater(tp) for tp in self._consumer.assignment()}
        return {p: max(0, end - self.applied.get(p, -1) - 1) for p, end in ends.items() if end is not None}

    def serves(self, tenant_id: str) -> bool:
        return not self._shard or tenant_id in self._shard

    def partition_of(self, tenant_id: str) -> int:
        partition = self._partitions.get(tenant_id)
        if partition is None:
            partition = tenant_partition(tenant_id, self._partition_count)
            self._partitions[tenant_id] = partition
        return partition

    def cursor_of(self, tenant_id: str) -> str:
        """Where the tenant's stream stands now (no await between this and a snapshot of the view)."""
        partition = self.partition_of(tenant_id)
        return Cursor(self.epoch, partition, self.applied[partition]).encode()

    def floor_of(self, tenant_id: str) -> int:
        """From which offset this edge has applied every record of the tenant's partition."""
        return self.floor[self.partition_of(tenant_id)]

    def resume_position(self, tenant_id: str, cursor: Cursor) -> int | None:
        """Where in the tenant's resume buffer a client back with ``cursor`` continues; None when what it missed
        cannot all be had from there (another topic epoch or partition, too old, or ahead of this edge)."""
        partition = self.partition_of(tenant_id)
        if cursor.epoch != self.epoch or cursor.partition != partition or cursor.offset > self.applied[partition]:
            return None
        return self.fanout.resume_buffer.of(tenant_id, self.floor[partition]).seq_after(cursor.offset)

    async def reach(self, tenant_id: str, offset: int) -> None:
        """Wait until the feed has applied ``offset`` of the tenant's partition (a client from an edge that was
        ahead of this one); the caller bounds the wait."""
        partition = self.partition_of(tenant_id)
        while self.applied[partition] < offset:
            await self._advanced.wait()

    def _check_caught_up(self) -> None:
        if not self._catch_up and not self.ready.is_set():
            self.ready.set()
            log.info("edge caught up with the topic; serving initial states")
