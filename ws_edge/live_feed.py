"""The edge's feed: bootstrap the view from the projector's table, then follow the topic from its offsets.

The table and its offsets are read in one transaction, so "state at offset N" plus "every record from N"
is the whole history with no gap and no double count. The edge has its own consumer with no group: every
edge node reads every partition. ``ready`` is set once the feed has reached the end offsets the topic had
at start-up, so the first initial_state already contains everything Kafka had acknowledged by then.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import TopicPartition

from locstream.kafka import ensure_topic, make_consumer
from locstream.lifecycle import cancel_and_wait
from projector.apply import Position
from projector.backends import make_store
from schemas.events import InvalidEventError, LocationRecorded, decode_event
from ws_edge import frames
from ws_edge.fanout import Fanout
from ws_edge.settings import EdgeSettings
from ws_edge.view import LiveView

log = logging.getLogger(__name__)


class LiveFeed:
    """Owns the edge's consumer: ``start()`` bootstraps and spawns the loop, ``stop()`` ends and awaits it."""

    def __init__(self, settings: EdgeSettings, view: LiveView, fanout: Fanout) -> None:
        self.settings = settings
        self.view = view
        self.fanout = fanout
        self.ready = asyncio.Event()
        self.skipped = 0
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
        self.view.load(snapshot.states)
        self._consumer = make_consumer(kafka, group_id=None)
        await self._consumer.start()
        self._consumer.assign(partitions)
        for tp in partitions:
            if tp.partition in snapshot.offsets:
                self._consumer.seek(tp, snapshot.offsets[tp.partition])
            else:
                await self._consumer.seek_to_beginning(tp)
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

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def _run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=1000, max_records=5_000)
            for tp, records in batches.items():
                self._apply(tp, records)
            if self._catch_up:
                for tp in list(self._catch_up):
                    if await self._consumer.position(tp) >= self._catch_up[tp]:
                        del self._catch_up[tp]
                self._check_caught_up()

    def _apply(self, tp: TopicPartition, records: list[Any]) -> None:
        """Apply and publish without awaiting: a subscriber sees either the state before or the update."""
        for record in records:
            try:
                event = decode_event(record.value)
            except InvalidEventError:
                self.skipped += 1
                log.warning("skipping undecodable record at %s/%d", tp.partition, record.offset)
                continue
            location = self.view.apply(event, Position(tp.partition, record.offset))
            if location is not None:
                backfill = isinstance(event, LocationRecorded) and event.data.backfill
                self.fanout.publish(event.tenant_id, frames.location_update(location, backfill=backfill))

    def _check_caught_up(self) -> None:
        if not self._catch_up and not self.ready.is_set():
            self.ready.set()
            log.info("edge caught up with the topic; serving initial states")
