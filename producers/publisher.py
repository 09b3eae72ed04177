"""Appends events to the topic and waits, boundedly, for Kafka's acknowledgement."""

from __future__ import annotations

import asyncio
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

    async def publish(self, event: Event) -> Any:
        """Send one event keyed by its tenant; returns Kafka's RecordMetadata once acknowledged."""
        assert self._producer is not None, "publisher not started"
        send = self._producer.send_and_wait(
            self.settings.kafka.topic, encode_event(event), key=event.tenant_id.encode()
        )
        try:
            return await asyncio.wait_for(send, self.settings.ack_timeout_seconds)
        except TimeoutError as exc:
            raise PublishTimeoutError(f"Kafka did not acknowledge within {self.settings.ack_timeout_seconds}s") from exc
