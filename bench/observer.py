"""A Kafka consumer beside the system under test: how long a fix takes from POST to being readable from Kafka.

That is the Kafka part of the end-to-end latency (POST sent -> API -> broker ack -> a consumer's fetch).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import orjson

from bench.stats import percentiles
from locstream.kafka import make_consumer
from locstream.lifecycle import cancel_and_wait
from locstream.settings import KafkaSettings


def _recorded_at(value: bytes) -> float | None:
    try:
        message = orjson.loads(value)
        stamp = message.get("recorded_at") or message["data"]["last_update"]
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


class KafkaObserver:
    def __init__(self, bootstrap: str, topic: str) -> None:
        self.kafka = KafkaSettings(bootstrap_servers=bootstrap, topic=topic)
        self.samples: list[float] = []
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._consumer = make_consumer(self.kafka, group_id=None, auto_offset_reset="latest")
        await self._consumer.start()
        self._consumer.subscribe([self.kafka.topic])
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            now = time.time()
            for records in batches.values():
                for record in records:
                    stamp = _recorded_at(record.value)
                    if stamp is not None:
                        self.samples.append(now - stamp)

    async def stop(self) -> dict[str, float | int]:
        await cancel_and_wait(self._task)
        if self._consumer is not None:
            await self._consumer.stop()
        return percentiles(self.samples)
