"""The derived-facts processor's loop (it began as the geofence processor, hence the package's name).

Instances share the location topic's partitions in one consumer group (``group_id``). Each keeps the state of the
partitions it holds in a local store whose every commit first goes to a changelog topic (``changelog.py``); when a
partition comes to an instance whose store is not at the changelog's end for it, its rows are restored from there
before its records are read (the hand-over: ``take`` and ``give_up``, called by the group's rebalances).

Each batch is evaluated record by record by the rules (``domain.derived_facts.Evaluation``: crossings, stops and
trips, online and offline, each event to the partition of the record that caused it); between batches, once caught
up, the technicians silent for their tenant's threshold are said offline (``tick``). The events go to the producer in
record batches; then, in the background while the next batch is evaluated, the processor waits for Kafka's
acknowledgements and stores the technicians' state (as it was after the batch) and the next offsets in one
transaction (``state.py``), on a thread of its own, one batch after the other. Its own events come back through the
topic: its offline events are read back (the log has the last word), the others passed over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Histogram

from domain.derived_facts import STAY_TYPES, Evaluation, Outbox, offline_event
from domain.geofencing import TechnicianFences
from domain.partitioning import tenant_partition
from domain.presence import PartitionClock, Presences
from domain.stays import StayTrack
from geofencer.changelog import Changelog
from geofencer.settings import GeofencerSettings
from geofencer.state import Changes, GeofencerState, Key, StayBase, Write
from locstream.fences import FenceRegistry
from locstream.gc_tuning import tune_for_batches
from locstream.kafka import (
    SentBatch,
    acknowledged_ends,
    ensure_topic,
    make_consumer,
    make_producer,
    request_rejoin,
    seek_to_offsets,
    send_batches,
)
from locstream.lifecycle import cancel_and_wait
from locstream.tenant_rules import TenantRulesRegistry

log = logging.getLogger(__name__)


WATCHING_SECONDS = 5.0  # a partition whose leader answered a fetch this recently is being watched
LOOP_TURN_SECONDS = 0.02  # evaluation gives the event loop a turn at least this often (it may share one: dev)
EVALUATION_CHUNK = 256  # records evaluated between two looks at the time (about 5 ms of them)


class GeofencerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.fixes = Counter("locstream_geofencer_fixes", "Fixes evaluated", registry=self.registry)
        crossings = Counter(
            "locstream_geofencer_crossings", "Crossings appended", ["event_type"], registry=self.registry
        )
        self.crossings = {kind: crossings.labels(kind) for kind in ("enter", "exit")}  # bound once: labels() costs
        stays = Counter(
            "locstream_geofencer_stays", "Stops and trips events appended", ["event_type"], registry=self.registry
        )
        self.stays = {kind: stays.labels(kind) for kind in STAY_TYPES}
        presence = Counter(
            "locstream_geofencer_presence", "Online and offline events appended", ["event_type"], registry=self.registry
        )
        self.presence = {kind: presence.labels(kind) for kind in ("technician_offline", "technician_online")}
        self.too_late = Counter(
            "locstream_geofencer_too_late_for_stays",
            "Good fixes older than their technician's stays horizon: in the history, not in stops and trips",
            registry=self.registry,
        )
        self.restored = Counter(
            "locstream_geofencer_restored_partitions",
            "Partitions whose state was rebuilt from the changelog when they came to this instance",
            registry=self.registry,
        )
        self.overtaken = Counter(
            "locstream_geofencer_overtaken_partitions",
            "Partitions another instance wrote the changelog of while this one held them (it stalled past its"
            " session): their commit was not appended",
            registry=self.registry,
        )
        self.restore_seconds = Histogram(
            "locstream_geofencer_restore_seconds",
            "The state of the partitions an assignment brought, read from the changelog",
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "locstream_geofencer_batch_seconds", "One batch: evaluated, appended, stored", registry=self.registry
        )
        # Each derived event type's counter (by the event's ``type``), bound once: labels() costs.
        self._by_type: dict[str, Counter] = {
            "geofence_entered": self.crossings["enter"],
            "geofence_exited": self.crossings["exit"],
            **self.stays,
            **self.presence,
        }

    def count(self, outbox: Outbox) -> None:
        """The events of a batch (or a tick), by type."""
        for kind, count in outbox.counts.items():
            self._by_type[kind].inc(count)


class _HandOver(ConsumerRebalanceListener):  # type: ignore[misc]
    """The group's rebalances, handed to the processor: what it gives up and what it takes."""

    def __init__(self, geofencer: Geofencer) -> None:
        self._geofencer = geofencer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._geofencer.give_up({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._geofencer.take_or_retry(sorted(assigned, key=lambda tp: tp.partition))


class Geofencer:
    """``start()`` opens the store, the fences and the rules and joins the group; ``stop()`` awaits the loop and the
    last batch's commit, leaves the group and closes."""

    def __init__(self, settings: GeofencerSettings) -> None:
        self.settings = settings
        self.fences = FenceRegistry(settings.kafka, geometry=True)
        self.rules = TenantRulesRegistry(settings.kafka)
        self.state = GeofencerState(settings.data.data_dir / "geofencer.sqlite3")
        self.changelog = Changelog(settings.kafka)
        self.metrics = GeofencerMetrics()
        self.technicians: dict[Key, TechnicianFences] = {}
        self.tracks: dict[Key, StayTrack] = {}
        self.clocks: dict[int, PartitionClock] = {}  # each partition's watched time (domain/presence.py)
        self.presences = Presences()
        self.positions: dict[int, int] = {}  # next offset per partition, as stored
        self.read_to: dict[int, int] = {}  # next offset per partition, as read
        self.owned: set[int] = set()  # the partitions this instance reads now
        self.held: set[int] = set()  # the partitions whose state is in memory (owned, or given up and maybe back)
        self.joined = False  # the group gave this instance its share (maybe none) at least once
        self.take_failed: str | None = None  # why the last assignment could not be taken (retried by a rejoin)
        self.member = ""  # this instance's static id in the group, and the writer its changelog records name
        # The changelog's end per owned partition as this instance last wrote or read it: a commit whose partition's
        # end is elsewhere now was overtaken by another instance (this one stalled past its session): not appended.
        self.changelog_ends: dict[int, int] = {}
        self.running = False
        self._consumer: Any = None
        self._producer: Any = None
        self._task: asyncio.Task[None] | None = None
        self._settling: asyncio.Task[None] | None = None  # the last batch's acks and commit, under way
        self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="geofencer-state")
        # A rebalance runs in the consumer's coordinator task: it waits for the batch being evaluated and its commit
        # (the loop holds this lock from a poll's answer to the batch's settle queued), so what it gives up or takes
        # is stored as of a batch's end.
        self._handing_over = asyncio.Lock()

    async def start(self) -> None:
        tune_for_batches(self.settings.gc_gen0_threshold)
        partitions = await ensure_topic(self.settings.kafka)
        self.state.partition_count = len(partitions)
        self.state.open()
        self.member = self.settings.instance_id or self.state.identity()
        await self.changelog.start(len(partitions))
        await self.fences.start()
        await self.rules.start()
        self._producer = make_producer(self.settings.kafka, linger_ms=5)  # crossings go out in batches
        await self._producer.start()
        # A tenant's fixes all come from one partition: fetch more of it at a time than the 1 MiB default.
        self._consumer = make_consumer(
            self.settings.kafka,
            group_id=self.settings.group_id,
            group_instance_id=self.member,
            session_timeout_ms=int(self.settings.session_timeout_seconds * 1000),
            heartbeat_interval_ms=int(self.settings.session_timeout_seconds * 1000 / 4),
            max_poll_records=self.settings.max_batch,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        await self._consumer.start()
        self._consumer.subscribe([self.settings.kafka.topic], listener=_HandOver(self))
        self._task = asyncio.create_task(self._run(), name="geofencer")
        self.running = True

    async def stop(self) -> None:
        self.running = False
        await cancel_and_wait(self._task)
        self._task = None
        await self._settled(within=10)
        if self._consumer is not None:
            await self._consumer.stop()  # leaves the group: the others take its partitions at once
        self._committer.shutdown(wait=True)
        if self._producer is not None:
            await self._producer.stop()
        self._consumer = self._producer = None
        await self.changelog.stop()
        await self.fences.stop()
        await self.rules.stop()
        self.state.close()

    async def _settled(self, within: float | None = None) -> None:
        """The last batch acknowledged and committed (a failed one is repeated by the next owner, same ids)."""
        if self._settling is not None and not self._settling.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._settling), within)

    def problems(self) -> list[str]:
        if not self.running:
            return ["not started"]
        if self._task is not None and self._task.done():
            return [f"the loop stopped: {self._task.exception()!r}"[:200]]
        if self.take_failed is not None:
            return [self.take_failed]
        if not self.joined:
            return ["waiting for the group to give this instance its partitions"]
        return []

    def health(self) -> dict[str, object]:
        """``/healthz``: ready once the group gave this instance its share, and which partitions it reads."""
        return {"ready": self.joined, "partitions": sorted(self.owned)}

    async def give_up(self, partitions: set[int]) -> None:
        """A rebalance begins: once the batch under way is committed, read no more of ``partitions``. Their state
        stays in memory: the group gives most of them back, and ``take`` keeps it then if no one wrote since."""
        async with self._handing_over:
            await self._settled()
            self.owned -= partitions
        log.info("geofencer: gave up partitions %s", sorted(partitions))

    async def take_or_retry(self, partitions: list[TopicPartition]) -> None:
        """``take``; when it fails (the changelog out of reach mid-restore), the partitions stay unread (aiokafka only
        logs a listener's failure: they would stay assigned and silent), /readyz says why, and the instance rejoins
        its group, whose next assignment takes them again."""
        try:
            await self.take(partitions)
            self.take_failed = None
        except Exception as exc:
            log.exception(
                "geofencer: taking partitions %s failed; rejoining the group", [tp.partition for tp in partitions]
            )
            self.take_failed = f"taking partitions failed: {exc!r}"[:200]
            request_rejoin(self._consumer)

    async def take(self, partitions: list[TopicPartition]) -> None:
        """A rebalance ends with ``partitions`` here: each one's state as the changelog has it (restored when this
        store is not at its end), then the reads resume from the offsets stored with it."""
        async with self._handing_over:
            await self._settled()
            taken = {tp.partition for tp in partitions}
            for partition in sorted(self.held - taken):
                self._forget(partition)
            ends = await self.changelog.end_offsets(sorted(taken))
            stale = [partition for partition in sorted(taken) if not await self._current(partition, ends[partition])]
            for partition in stale:
                self._forget(partition)
            if stale:
                await self._restore({partition: ends[partition] for partition in stale})
            for partition in sorted(taken - self.held):
                self._load(partition)
            await self._mark_taken(taken)
            stored = {p: offset for p, offset in self.state.stored_offsets().items() if p in taken}
            await seek_to_offsets(self._consumer, partitions, stored, fresh_at=self.settings.start_from)
            for tp in partitions:
                self.positions[tp.partition] = self.read_to[tp.partition] = await self._consumer.position(tp)
            self.owned = taken
            self.joined = True
        log.info(
            "geofencer: took partitions %s: %d technicians, %d tracks, from offsets %s",
            sorted(taken),
            len(self.technicians),
            len(self.tracks),
            dict(sorted(self.positions.items())),
        )

    async def _mark_taken(self, partitions: set[int]) -> None:
        """Append to each taken partition's changelog who took it (the ``owners`` row): its end moves, so an
        instance that held it and stalled past its session finds it written by another before its next append
        (``_overtaken``). The ends after it are this instance's from now on."""
        if not partitions:
            self.changelog_ends = {}
            return
        marks = [Write("owners", (p,), (p, self.member)) for p in sorted(partitions)]
        sent = await self.changelog.append(self._producer, {mark.key[0]: [mark] for mark in marks}, self.member)
        ends = await acknowledged_ends(sent)
        await asyncio.get_running_loop().run_in_executor(self._committer, self.state.apply, marks, ends)
        self.changelog_ends = ends

    async def _current(self, partition: int, changelog_end: int) -> bool:
        """Whether this store's rows of ``partition`` are the changelog's: no one else wrote since it did. A store
        from before the changelog, or one that is further than the changelog (the topic was deleted and made anew),
        seeds it with its rows: they are the best copy there is."""
        local = self.state.changelog_ends().get(partition, 0)
        if local == changelog_end and changelog_end > 0:
            return True
        if changelog_end > local:
            return False
        writes = self.state.partition_writes(partition)  # changelog_end <= local: it has less than this store
        if writes:
            sent = await self.changelog.append(self._producer, {partition: writes}, self.member)
            ends = await acknowledged_ends(sent)
            self.state.apply([], ends)
            log.info("geofencer: seeded the changelog of partition %d with %d rows", partition, len(writes))
        return True

    async def _restore(self, ends: dict[int, int]) -> None:
        """Rebuild the rows of the partitions in ``ends`` from their changelog, read to the end given."""
        began = time.perf_counter()
        read = await self.changelog.read(ends)
        loop = asyncio.get_running_loop()
        for partition, writes in read.items():
            await loop.run_in_executor(
                self._committer, self.state.replace_partition, partition, writes, ends[partition]
            )
        took = time.perf_counter() - began
        self.metrics.restored.inc(len(ends))
        self.metrics.restore_seconds.observe(took)
        log.info(
            "geofencer: restored partitions %s from %d changelog records in %.2f s",
            sorted(ends),
            sum(len(writes) for writes in read.values()),
            took,
        )

    def _load(self, partition: int) -> None:
        """The stored state of ``partition`` into memory."""
        technicians, _ = self.state.load(partition)
        self.technicians.update(technicians)
        clocks, presences = self.state.load_presence(partition)
        self.clocks.update(clocks)
        for key, presence in presences.items():
            self.presences.restore(key, presence, self.rules.presence(key[0]).offline_seconds)
        self.tracks.update(
            self.state.load_tracks(
                self.rules.stays, lambda tenant: self.rules.quality(tenant).max_speed_kmh, partition=partition
            )
        )
        self.held.add(partition)

    def _forget(self, partition: int) -> None:
        """Drop the state of ``partition`` from memory (another instance holds it now)."""
        n = self.state.partition_count
        for table in (self.technicians, self.tracks):
            for key in [key for key in table if tenant_partition(key[0], n) == partition]:
                del table[key]
        self.presences.forget(partition)
        self.clocks.pop(partition, None)
        self.positions.pop(partition, None)
        self.read_to.pop(partition, None)
        self.held.discard(partition)

    async def _run(self) -> None:
        try:
            while True:
                batches = await self._consumer.getmany(timeout_ms=1_000, max_records=self.settings.max_batch)
                async with self._handing_over:
                    owned = self._owned_records(batches)
                    if owned:
                        await self.process(owned)
                    await self.tick(time.time())
        except Exception:  # /readyz says so too (problems); the log says where
            log.exception("geofencer: the loop stopped")
            raise

    def _owned_clocks(self) -> dict[int, PartitionClock]:
        """The watched clocks of the partitions owned: a commit writes no row of a partition given up."""
        return {partition: clock for partition, clock in self.clocks.items() if partition in self.owned}

    def _owned_records(self, batches: dict[TopicPartition, list[Any]]) -> dict[TopicPartition, list[Any]]:
        """The records of the partitions still owned, from where they were read to: a poll answered before a
        rebalance may hold records of a partition given up, or of one taken again from an earlier offset."""
        owned: dict[TopicPartition, list[Any]] = {}
        for tp, records in batches.items():
            start = self.read_to.get(tp.partition)
            if tp.partition not in self.owned or start is None or not records:
                continue
            if records[0].offset < start:
                records = [record for record in records if record.offset >= start]
            if records:
                owned[tp] = records
        return owned

    async def _send(self, outbox: Outbox) -> list[SentBatch]:
        """Hand a batch's derived events to the producer, in record batches per partition: the acknowledgements the
        batch's settling awaits."""
        return await send_batches(self._producer, self.settings.kafka.topic, outbox.by_partition)

    def _watching(self, tp: TopicPartition, now: float) -> bool:
        """Caught up with the partition, and heard from its leader in the last ``WATCHING_SECONDS``: its watched time
        may follow the wall clock."""
        polled = self._consumer.last_poll_timestamp(tp)
        highwater = self._consumer.highwater(tp)
        if polled is None or highwater is None or now - polled / 1000 > WATCHING_SECONDS:
            return False
        return bool(self.read_to.get(tp.partition, 0) >= highwater)

    async def tick(self, now: float) -> None:
        """Move the watched clocks of the partitions the processor is caught up with to ``now``, and say who went
        offline (``domain/presence.py``)."""
        moved = False
        for tp in self._consumer.assignment():
            if tp.partition in self.owned and self._watching(tp, now):
                self.clocks.setdefault(tp.partition, PartitionClock()).advance(now)
                moved = True
        if not moved:
            return
        watched = {partition: clock.watched for partition, clock in self.clocks.items()}
        gone = self.presences.silent(watched, lambda tenant: self.rules.presence(tenant).offline_seconds)
        if not gone:
            return
        changes = Changes()
        changes.set_clocks(self._owned_clocks())
        outbox = Outbox()
        for key in gone:
            presence = self.presences.by_key[key]
            event = offline_event(key, presence, watched[presence.partition] - presence.heard_at, now)
            changes.add_presence(key, presence)
            outbox.add(event, presence.partition)
        self.metrics.count(outbox)
        await self._queue_settle(await self._send(outbox), changes, {}, time.perf_counter())

    async def process(self, batches: dict[TopicPartition, list[Any]]) -> None:
        """Evaluate a batch (``domain.derived_facts.Evaluation``, in chunks: the event loop gets a turn at least every
        ``LOOP_TURN_SECONDS``), hand its events to the producer and queue its settling."""
        began = time.perf_counter()
        rules = self.rules
        evaluation = Evaluation(
            self.technicians,
            self.tracks,
            self.clocks,
            self.presences,
            self.fences.book,
            lambda tenant: (
                rules.stays(tenant),
                rules.quality(tenant).max_speed_kmh,
                rules.presence(tenant).offline_seconds,
            ),
            self.settings.stays_horizon_seconds,
            self.settings.stays_max_fixes,
            time.time(),
        )
        next_offsets: dict[int, int] = {}
        turn = began
        for tp, records in batches.items():
            values = [record.value for record in records]
            for start in range(0, len(values), EVALUATION_CHUNK):
                evaluation.records(tp.partition, values[start : start + EVALUATION_CHUNK])
                if time.perf_counter() - turn > LOOP_TURN_SECONDS:  # a big batch among big fences: let others run
                    await asyncio.sleep(0)
                    turn = time.perf_counter()
            next_offsets[tp.partition] = records[-1].offset + 1
        self.read_to.update(next_offsets)
        changes = Changes(tail=evaluation.tail)
        changes.technicians = self.state.rows(evaluation.changed.items())
        for key in dict.fromkeys(evaluation.cut):  # the tracks whose tail was cut: their new start
            track = self.tracks[key]
            changes.bases.append(StayBase(*key, track.base, track.settled, track.horizon))
        for key in evaluation.changed.keys() | evaluation.heard_from:  # their presences as they are now
            changes.add_presence(key, self.presences.by_key[key])
        changes.set_clocks(self._owned_clocks())
        self.metrics.fixes.inc(evaluation.fixes)
        self.metrics.too_late.inc(evaluation.too_late)
        self.metrics.count(evaluation.outbox)
        await self._queue_settle(await self._send(evaluation.outbox), changes, next_offsets, began)

    async def _queue_settle(
        self, sends: list[SentBatch], changes: Changes, next_offsets: dict[int, int], began: float
    ) -> None:
        if self._settling is not None:  # the batch before settles while this one is evaluated, never two at once
            # Its failure ends the loop (nothing is committed past an unacknowledged send); shielded, so a stop that
            # cancels the loop here does not cancel the settle under way.
            await asyncio.shield(self._settling)
        self._settling = asyncio.create_task(self._settle(sends, changes, next_offsets, began))

    async def _overtaken(self, partitions: set[int]) -> set[int]:
        """Those of ``partitions`` another instance has written the changelog of since this one last did (it took
        them while this one stalled past its session timeout, or it stalled and wrote after this one took them):
        given up here and now, nothing more of them appended; this instance rejoins the group, and a later ``take``
        of them restores them with what the other wrote."""
        if not partitions:
            return set()
        ends = await self.changelog.end_offsets(sorted(partitions))
        overtaken = {p for p in partitions if ends[p] != self.changelog_ends.get(p)}
        if overtaken:
            log.warning(
                "geofencer: partitions %s were written by another instance: given up, rejoining the group",
                sorted(overtaken),
            )
            self.owned -= overtaken
            self.metrics.overtaken.inc(len(overtaken))
            request_rejoin(self._consumer)  # the group says who holds them now; a take here restores them
        return overtaken

    async def _settle(
        self, sends: list[SentBatch], changes: Changes, next_offsets: dict[int, int], began: float
    ) -> None:
        """Every event of the batch acknowledged (acks=all), then the state and offsets after it: appended to the
        changelog and acknowledged, then committed to the local store with the changelog's new ends."""
        await acknowledged_ends(sends)
        loop = asyncio.get_running_loop()
        writes = await loop.run_in_executor(self._committer, self.state.writes, changes, next_offsets)
        by_partition = self.changelog.by_partition(writes)
        overtaken = await self._overtaken(set(by_partition))
        if overtaken:
            writes = [write for p, held in by_partition.items() if p not in overtaken for write in held]
            by_partition = {p: held for p, held in by_partition.items() if p not in overtaken}
            next_offsets = {p: offset for p, offset in next_offsets.items() if p not in overtaken}
        ends = await acknowledged_ends(await self.changelog.append(self._producer, by_partition, self.member))
        self.changelog_ends.update(ends)
        await loop.run_in_executor(self._committer, self.state.apply, writes, ends)
        self.positions.update(next_offsets)
        self.metrics.batch_seconds.observe(time.perf_counter() - began)
