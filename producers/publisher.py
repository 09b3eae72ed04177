"""Appends events to the topic and waits, boundedly, for Kafka's acknowledgement."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from locstream.kafka import ensure_topic, make_producer
from producers.settings import ProducersSettings
from schemas.events import Event, encode_event


class PublishTimeoutError(Exception):
    """Kafka did not acknowledge in time; the caller must not report success."""


class EventPublisher:
    """Owns the idempotent producer: ``start()`` connects (and creates the topic), ``stop()`` flushes."""

    def __init__(self, settings: ProducersSettings) -> None:
        self.settings = settings
        self._producer: Any = None

    async def start(self) -> None:
        assert self._producer is None, "publisher already started"
        await ensure_topic(self.settings.kafka)
        self._producer = make_producer(self.settings.kafka)
        await self._producer.start()

    async def stop(self) -> None:
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
            pending = [
                await producer.send(topic, encode_event(event), key=event.tenant_id.encode()) for event in events
            ]
            return list(await asyncio.gather(*pending))

        try:
            return await asyncio.wait_for(send_all(), self.settings.ack_timeout_seconds)
        except TimeoutError as exc:
            raise PublishTimeoutError(f"Kafka did not acknowledge within {self.settings.ack_timeout_seconds}s") from exc
