"""Appends events to the topic and waits, boundedly, for Kafka's acknowledgement.

aiokafka's idempotent producer numbers the batches it sends per partition. When the broker goes away, batches that
wait longer than the request timeout expire in the client, leaving a gap in the numbering; once the broker is back
it refuses every later batch (``OutOfOrderSequenceNumber``) and aiokafka never recovers by itself. So when Kafka
answers with such an error the publisher starts a fresh producer (a new producer id numbers from zero), and the
request that saw it is answered 503 like any other unacknowledged one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka.errors import (
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)

from locstream.kafka import ensure_topic, make_producer
from locstream.lifecycle import cancel_and_wait
from producers.settings import ProducersSettings
from schemas.events import Event, encode_event

log = logging.getLogger(__name__)

# Errors after which this producer's sequence numbers are of no use: only a new producer id gets past them.
_NEEDS_NEW_PRODUCER = (
    OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerEpoch, InvalidProducerIdMapping, ProducerFenced,
)  # fmt: skip


class PublishTimeoutError(Exception):
    """Kafka did not acknowledge in time; the caller must not report success."""


class ProducerRenewedError(Exception):
    """Kafka refused the producer's sequence (after a broker restart); a new producer takes the next requests."""


class EventPublisher:
    """Owns the idempotent producer: ``start()`` connects (and creates the topic), ``stop()`` flushes."""

    def __init__(self, settings: ProducersSettings) -> None:
        self.settings = settings
        self.renewals = 0
        self._producer: Any = None
        self._renewing: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()

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

    async def publish(self, events: Sequence[Event]) -> list[Any]:
        """Send events keyed by their tenant, in order; returns Kafka's RecordMetadata of each once all are
        acknowledged, or raises ``PublishTimeoutError`` after ``ack_timeout_seconds`` (sends already handed to the
        client may still be delivered later: a client's retry is recognised by the event's identity)."""
        assert self._producer is not None, "publisher not started"
        producer, topic = self._producer, self.settings.kafka.topic

        async def send_all() -> list[Any]:
            pending = [await producer.send(topic, encode_event(e), key=e.tenant_id.encode()) for e in events]
            return list(await asyncio.gather(*pending))

        try:
            return await asyncio.wait_for(send_all(), self.settings.ack_timeout_seconds)
        except TimeoutError as exc:
            raise PublishTimeoutError(f"Kafka did not acknowledge within {self.settings.ack_timeout_seconds}s") from exc
        except _NEEDS_NEW_PRODUCER as exc:
            self._renew(producer, exc)
            raise ProducerRenewedError(f"Kafka refused the producer's sequence ({type(exc).__name__})") from exc

    def _renew(self, broken: Any, cause: Exception) -> None:
        if broken is not self._producer or (self._renewing is not None and not self._renewing.done()):
            return  # already replaced, or being replaced

        async def renew() -> None:
            log.warning("starting a new Kafka producer after %s", type(cause).__name__)
            fresh = make_producer(self.settings.kafka)
            await fresh.start()
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
