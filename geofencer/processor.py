"""The geofence processor's loop.

One instance reads every partition of the location topic (assigned, not a group: its state is local, so a
partition must not move to another instance). For each batch: decode, evaluate each fix against its tenant's fences
(``domain.geofencing.evaluate``; a fix the quality rule flags, ``domain.projection.fix_verdict``, is passed over as
the projector passes it over), append every crossing to the fix's own partition (so it stays in order with the
fixes around it); then, in the background while the next batch is evaluated, wait for Kafka's acknowledgements and
store the technicians' state (as it was after the batch) and the next offsets in one transaction (``state.py``), on
a thread of its own, one batch after the other. Its own crossings come back through the topic and are passed over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry, Counter, Histogram

from domain.geofencing import Crossing, TechnicianFences, fix_crossings
from geofencer.settings import GeofencerSettings
from geofencer.state import GeofencerState, Key, Row
from locstream.fences import FenceRegistry
from locstream.kafka import ensure_topic, make_consumer, make_producer, seek_to_offsets
from locstream.lifecycle import cancel_and_wait
from schemas.events import (
    CrossingData,
    GeofenceEntered,
    GeofenceExited,
    InvalidEventError,
    LocationRecorded,
    decode_event,
    encode_event,
)

log = logging.getLogger(__name__)


LOOP_TURN_SECONDS = 0.02  # evaluation gives the event loop a turn at least this often (it may share one: dev)


class GeofencerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.fixes = Counter("locstream_geofencer_fixes", "Fixes evaluated", registry=self.registry)
        crossings = Counter(
            "locstream_geofencer_crossings", "Crossings appended", ["event_type"], registry=self.registry
        )
        self.crossings = {kind: crossings.labels(kind) for kind in ("enter", "exit")}  # bound once: labels() costs
        self.batch_seconds = Histogram(
            "locstream_geofencer_batch_seconds", "One batch: evaluated, appended, stored", registry=self.registry
        )


def crossing_event(fix: LocationRecorded, crossing: Crossing) -> GeofenceEntered | GeofenceExited:
    kind = GeofenceEntered if crossing.kind == "enter" else GeofenceExited
    return kind(
        event_id=crossing.event_id,
        tenant_id=fix.tenant_id,
        technician_id=fix.technician_id,
        recorded_at=fix.recorded_at,
        received_at=fix.received_at,
        data=CrossingData(
            geofence_id=crossing.fence.geofence_id,
            job_id=crossing.fence.job_id,
            geofence_name=crossing.fence.name,
            distance_meters=round(crossing.distance_m, 2),
            fix_event_id=fix.event_id,
        ),
    )


class Geofencer:
    """``start()`` loads the state and the fences and begins; ``stop()`` awaits the loop and closes."""

    def __init__(self, settings: GeofencerSettings) -> None:
        self.settings = settings
        self.fences = FenceRegistry(settings.kafka, geometry=True)
        self.state = GeofencerState(settings.data.data_dir / "geofencer.sqlite3")
        self.metrics = GeofencerMetrics()
        self.technicians: dict[Key, TechnicianFences] = {}
        self.positions: dict[int, int] = {}  # next offset per partition, as stored
        self.running = False
        self._consumer: Any = None
        self._producer: Any = None
        self._task: asyncio.Task[None] | None = None
        self._settling: asyncio.Task[None] | None = None  # the last batch's acks and commit, under way
        self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="geofencer-state")

    async def start(self) -> None:
        self.state.open()
        self.technicians, stored = self.state.load()
        partitions = await ensure_topic(self.settings.kafka)
        await self.fences.start()
        self._producer = make_producer(self.settings.kafka, linger_ms=5)  # crossings go out in batches
        await self._producer.start()
        # A tenant's fixes all come from one partition: fetch more of it at a time than the 1 MiB default.
        self._consumer = make_consumer(
            self.settings.kafka,
            group_id=None,
            max_poll_records=self.settings.max_batch,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        await self._consumer.start()
        self._consumer.assign(partitions)
        await seek_to_offsets(self._consumer, partitions, stored, fresh_at=self.settings.start_from)
        for tp in partitions:
            self.positions[tp.partition] = await self._consumer.position(tp)
        log.info(
            "geofencer: %d technicians' state, %d fences, from offsets %s",
            len(self.technicians),
            sum(len(index) for index in self.fences.book.indexes.values()),
            dict(sorted(self.positions.items())),
        )
        self._task = asyncio.create_task(self._run(), name="geofencer")
        self.running = True

    async def stop(self) -> None:
        self.running = False
        await cancel_and_wait(self._task)
        self._task = None
        if self._settling is not None and not self._settling.done():  # the last batch: committed once acknowledged
            with contextlib.suppress(Exception):  # a failed one is repeated by the next start, same ids
                await asyncio.wait_for(asyncio.shield(self._settling), 10)
        self._committer.shutdown(wait=True)
        for client in (self._consumer, self._producer):
            if client is not None:
                await client.stop()
        self._consumer = self._producer = None
        await self.fences.stop()
        self.state.close()

    def problems(self) -> list[str]:
        if not self.running:
            return ["not started"]
        if self._task is not None and self._task.done():
            return [f"the loop stopped: {self._task.exception()!r}"[:200]]
        return []

    async def _run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=1_000, max_records=self.settings.max_batch)
            if batches:
                await self.process(batches)

    async def process(self, batches: dict[TopicPartition, list[Any]]) -> None:
        began = time.perf_counter()
        changed: dict[Key, TechnicianFences] = {}
        sends = []
        fixes = 0
        next_offsets: dict[int, int] = {}
        book = self.fences.book
        turn = began
        for tp, records in batches.items():
            for record in records:
                if time.perf_counter() - turn > LOOP_TURN_SECONDS:  # a big batch among big fences: let others run
                    await asyncio.sleep(0)
                    turn = time.perf_counter()
                try:
                    event = decode_event(record.value)
                except InvalidEventError:
                    continue  # the projector dead-letters it; nothing to evaluate
                if not isinstance(event, LocationRecorded):
                    continue
                fixes += 1
                key = (event.tenant_id, event.technician_id)
                state = self.technicians.get(key)
                if state is None:
                    state = self.technicians[key] = TechnicianFences()
                crossings = fix_crossings(state, book.index(event.tenant_id), event)
                if crossings is None:
                    continue  # a flagged fix triggers nothing and moves nothing (domain/fix_quality.py)
                for crossing in crossings:
                    out = crossing_event(event, crossing)
                    sends.append(
                        await self._producer.send(
                            self.settings.kafka.topic,
                            encode_event(out),
                            key=event.tenant_id.encode(),
                            partition=tp.partition,
                        )
                    )
                    self.metrics.crossings[crossing.kind].inc()
                changed[key] = state
            next_offsets[tp.partition] = records[-1].offset + 1
        rows = self.state.rows(changed.items())
        self.metrics.fixes.inc(fixes)
        if self._settling is not None:  # the batch before settles while this one is evaluated, never two at once
            # Its failure ends the loop (nothing is committed past an unacknowledged send); shielded, so a stop that
            # cancels the loop here does not cancel the settle under way.
            await asyncio.shield(self._settling)
        self._settling = asyncio.create_task(self._settle(sends, rows, next_offsets, began))

    async def _settle(self, sends: list[Any], rows: list[Row], next_offsets: dict[int, int], began: float) -> None:
        """Every crossing of the batch acknowledged (acks=all), then the state and offsets after it committed."""
        if sends:
            await asyncio.gather(*sends)
        await asyncio.get_running_loop().run_in_executor(self._committer, self.state.commit, rows, next_offsets)
        self.positions.update(next_offsets)
        self.metrics.batch_seconds.observe(time.perf_counter() - began)
