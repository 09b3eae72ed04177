"""Appends events to the topic and waits, boundedly, for Kafka's acknowledgement.

aiokafka's idempotent producer numbers the batches it sends per partition. When the broker goes away, batches that
wait longer than the request timeout expire in the client, leaving a gap in the numbering; once the broker is back
it refuses every later batch (``OutOfOrderSequenceNumber``) and aiokafka never recovers by itself. So when Kafka
answers with such an error the publisher starts a fresh producer (a new producer id numbers from zero), and the
request that saw it is answered 503 like any other unacknowledged one.

Record batches of concurrent requests for one partition are handed to aiokafka one request at a time
(``_partition_locks``). aiokafka's ``add_batch`` waits for the partition's previous batch to drain in a loop that
subtracts the time elapsed *since its first wait* on every turn (aiokafka 0.14, ``message_accumulator.py``), so a
request queued behind many others ran out of its 10 s in about 1.3 s: 20 concurrent 1,000-fix batches made 3 answer
503 ``KafkaTimeoutError`` while the broker was healthy. Queued on a lock instead, each request finds at most one
batch ahead of it, and the only deadline is ours (``ack_timeout_seconds``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from aiokafka.errors import (
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)

from domain.partitioning import tenant_partition
from domain.position import Position
from locstream.kafka import ensure_topic, make_producer
from locstream.lifecycle import cancel_and_wait
from producers.metrics import IngestMetrics
from producers.settings import ProducersSettings
from schemas.events import Event, encode_event

log = logging.getLogger(__name__)

# Errors after which this producer's sequence numbers are of no use: only a new producer id gets past them.
_NEEDS_NEW_PRODUCER = (
    OutOfOrderSequenceNumber,
    UnknownProducerId,
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    ProducerFenced,
)


class PublishTimeoutError(Exception):
    """Kafka did not acknowledge in time; the caller must not report success."""


class ProducerRenewedError(Exception):
    """Kafka refused the producer's sequence (after a broker restart); a new producer takes the next requests."""


class EventPublisher:
    """Owns the idempotent producer: ``start()`` connects (and creates the topic), ``stop()`` flushes."""

    def __init__(self, settings: ProducersSettings) -> None:
        self.settings = settings
        self.metrics = IngestMetrics()
        self.renewals = 0
        self._producer: Any = None
        self._renewing: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._partition_locks: dict[int, asyncio.Lock] = {}

    async def start(self) -> None:
        assert self._producer is None, "publisher already started"
        await ensure_topic(self.settings.kafka)
        self._producer = make_producer(self.settings.kafka)
        await self._producer.start()

    async def stop(self) -> None:
        await cancel_and_wait(self._renewing)
        for task in list(self._retiring):
            await task
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def publish(self, events: Sequence[Event]) -> list[Position]:
        """Append events keyed by their tenant, in order; returns where each landed once all are acknowledged, or
        raises ``PublishTimeoutError`` after ``ack_timeout_seconds`` (events already handed to the client may still
        be delivered later: a client's retry is recognised by the event's identity).

        One event goes through ``send`` (it joins whatever batch is being filled, so concurrent requests share
        produce requests); several are framed into record batches here (``send_batch``), which spares aiokafka's
        per-message bookkeeping: the batch endpoint's fixes are one tenant's, so one partition."""
        assert self._producer is not None, "publisher not started"
        producer = self._producer
        send = self._send_one if len(events) == 1 else self._send_batches
        began = time.perf_counter()
        try:
            acked = await asyncio.wait_for(send(producer, events), self.settings.ack_timeout_seconds)
        except TimeoutError as exc:
            self.metrics.failures.labels("timeout").inc()
            raise PublishTimeoutError(f"Kafka did not acknowledge within {self.settings.ack_timeout_seconds}s") from exc
        except _NEEDS_NEW_PRODUCER as exc:
            self.metrics.failures.labels("renewed").inc()
            self._renew(producer, exc)
            raise ProducerRenewedError(f"Kafka refused the producer's sequence ({type(exc).__name__})") from exc
        self.metrics.produce_seconds.observe(time.perf_counter() - began)
        self.metrics.events.inc(len(events))
        return acked

    async def _send_one(self, producer: Any, events: Sequence[Event]) -> list[Position]:
        (event,) = events
        metadata = await producer.send_and_wait(
            self.settings.kafka.topic, encode_event(event), key=event.tenant_id.encode()
        )
        return [Position(metadata.partition, metadata.offset)]

    async def _send_batches(self, producer: Any, events: Sequence[Event]) -> list[Position]:
        topic = self.settings.kafka.topic
        partition_count = len(await producer.partitions_for(topic))  # a topic's partitions are 0 .. count - 1
        by_partition: dict[int, list[int]] = {}
        placed: dict[str, int] = {}  # tenant -> partition: murmur2 in Python costs ~6 µs, once per tenant is enough
        for index, event in enumerate(events):  # as producer.send(key=tenant) would place each
            partition = placed.get(event.tenant_id)
            if partition is None:
                partition = placed[event.tenant_id] = tenant_partition(event.tenant_id, partition_count)
            by_partition.setdefault(partition, []).append(index)
        sent: list[tuple[Any, int, list[int]]] = []  # (future of a record batch, its partition, event indexes)
        for partition, indexes in by_partition.items():
            async with self._partition_locks.setdefault(partition, asyncio.Lock()):  # see the module's docstring
                batch, members = producer.create_batch(), list[int]()
                for index in indexes:
                    key, value = events[index].tenant_id.encode(), encode_event(events[index])
                    if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start another
                        sent.append((await producer.send_batch(batch, topic, partition=partition), partition, members))
                        batch, members = producer.create_batch(), list[int]()
                        if batch.append(key=key, value=value, timestamp=None) is None:
                            raise ValueError(f"an event of {len(value)} bytes does not fit a record batch")
                    members.append(index)
                sent.append((await producer.send_batch(batch, topic, partition=partition), partition, members))
        landed: list[Position | None] = [None] * len(events)
        for future, partition, members in sent:
            base = (await future).offset
            for relative, index in enumerate(members):
                landed[index] = Position(partition, base + relative)
        return [acked for acked in landed if acked is not None]

    def _renew(self, broken: Any, cause: Exception) -> None:
        if broken is not self._producer or (self._renewing is not None and not self._renewing.done()):
            return  # already replaced, or being replaced

        async def renew() -> None:
            log.warning("starting a new Kafka producer after %s", type(cause).__name__)
            fresh = make_producer(self.settings.kafka)
            try:
                await fresh.start()
            except Exception:  # the broker is not back yet: the next refused request tries again
                log.warning("the new Kafka producer could not start", exc_info=True)
                await fresh.stop()
                return
            self._producer = fresh
            self.renewals += 1
            retire = asyncio.create_task(self._retire(broken), name="publisher-retire")
            self._retiring.add(retire)
            retire.add_done_callback(self._retiring.discard)

        self._renewing = asyncio.create_task(renew(), name="publisher-renew")

    async def _retire(self, producer: Any) -> None:
        """Stop a replaced producer; what it still holds is either delivered or reported failed by then."""
        try:
            await asyncio.wait_for(producer.stop(), 30)
        except (TimeoutError, Exception):
            log.warning("a replaced Kafka producer did not stop cleanly", exc_info=True)
