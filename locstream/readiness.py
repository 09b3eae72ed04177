"""Readiness shared by the services: is the broker reachable, and is a consumer silently stuck?

``BrokerProbe`` reads the topic's end offsets every few seconds with a consumer of its own (no group): that
answers "broker reachable" and gives an independent view of where a caught-up consumer should be. ``ProgressWatch``
(pure) compares those ends with a consumer's own positions: a partition with records beyond the consumer's
position, whose position has not moved for ``stuck_after`` seconds, is stuck. That is aiokafka #1154: after a
broker restart a consumer may stop fetching without an error, and its own lag (from its stale high-water marks)
says nothing. Readiness then fails, so an orchestrator restarts the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from locstream.kafka import make_consumer, topic_partitions
from locstream.lifecycle import cancel_and_wait
from locstream.settings import KafkaSettings

log = logging.getLogger(__name__)


@dataclass
class ProgressWatch:
    """Per partition, the consumer's position and since when it has not moved while records waited."""

    stuck_after: float
    _since: dict[int, tuple[int, float]] = field(default_factory=dict)  # partition -> (position, unchanged since)

    def observe(self, ends: dict[int, int], positions: dict[int, int], now: float) -> None:
        """``ends``: next offset to be written per partition (the broker's); ``positions``: next to be read."""
        for partition, position in positions.items():  # only the partitions this consumer reads
            end = ends.get(partition, 0)
            last = self._since.get(partition)
            if position >= end or last is None or last[0] != position:
                self._since[partition] = (position, now)

    def stuck(self, ends: dict[int, int], positions: dict[int, int], now: float) -> list[int]:
        return sorted(
            partition
            for partition, (position, since) in self._since.items()
            if partition in positions
            and positions[partition] == position < ends.get(partition, 0)
            and now - since > self.stuck_after
        )


class BrokerProbe:
    """``start()``/``stop()``; ``reachable`` and ``ends`` are refreshed every ``interval`` seconds. With
    ``positions`` (a consumer's next offsets per partition), each refresh also watches that consumer's progress."""

    def __init__(
        self,
        kafka: KafkaSettings,
        interval: float = 5.0,
        positions: Callable[[], dict[int, int]] | None = None,
        stuck_after: float = 30.0,
    ) -> None:
        self.kafka = kafka
        self.interval = interval
        self.reachable = False
        self.ends: dict[int, int] = {}
        self._positions = positions
        self._watch = ProgressWatch(stuck_after)
        self._task: asyncio.Task[None] | None = None

    def problems(self) -> list[str]:
        """Why the process is not ready as far as Kafka goes (empty: ready)."""
        if not self.reachable:
            return ["broker not reachable"]
        if self._positions is None:
            return []
        stuck = self._watch.stuck(self.ends, self._positions(), time.monotonic())
        return [f"consumer stuck on partitions {stuck} for over {self._watch.stuck_after:g} s"] if stuck else []

    async def start(self) -> None:
        assert self._task is None, "probe already started"
        self._task = asyncio.create_task(self._run(), name="broker-probe")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        consumer = None
        try:
            while True:
                try:
                    async with asyncio.timeout(max(self.interval, 5.0)):
                        if consumer is None:
                            partitions = await topic_partitions(self.kafka, wait_seconds=5.0)
                            consumer = make_consumer(self.kafka, group_id=None)
                            await consumer.start()
                        ends = await consumer.end_offsets(partitions)
                    self.ends = {tp.partition: offset for tp, offset in ends.items()}
                    self.reachable = True
                    if self._positions is not None:
                        self._watch.observe(self.ends, self._positions(), time.monotonic())
                except Exception as exc:  # any failure: not reachable, and a fresh client next time
                    if self.reachable:
                        log.warning("broker probe failed: %r", exc)
                    self.reachable = False
                    if consumer is not None:
                        with contextlib.suppress(Exception):
                            await consumer.stop()
                    consumer = None
                await asyncio.sleep(self.interval)
        finally:
            if consumer is not None:
                with contextlib.suppress(Exception):
                    await consumer.stop()
