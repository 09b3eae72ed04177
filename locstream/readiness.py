"""Readiness shared by the services: is the broker reachable, and is a consumer silently stuck?

``BrokerProbe`` reads the topic's end offsets every few seconds with a consumer of its own (no group): that
answers "broker reachable" and gives an independent view of where a caught-up consumer should be. ``ProgressWatch``
(pure) compares those ends with a consumer's own positions: a partition with records beyond the consumer's
position, whose position has not moved for ``stuck_after`` seconds, is stuck. That is aiokafka #1154: after a
broker restart a consumer may stop fetching without an error, and its own lag (from its stale high-water marks)
says nothing. Readiness then fails, so an orchestrator restarts the process.

Each refresh also describes the topic's partitions (``locstream.kafka_cluster``): a partition without a leader
makes the process unready (its events can be neither written nor read); partitions with fewer in-sync replicas than
replicas, and the brokers the cluster lists, are reported in ``/readyz``'s body (``kafka``) without failing it: the
cluster still takes writes while ``min.insync.replicas`` replicas are in sync, and restarting services would not
bring a broker back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from locstream.kafka import KafkaUnreachableError, admin_client, make_consumer, topic_partitions
from locstream.kafka_cluster import ClusterView, describe
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
        self.error = "not probed yet"  # why the broker was not reachable at the last refresh
        self.ends: dict[int, int] = {}
        self.cluster: ClusterView | None = None  # the topic's partitions and the brokers, at the last refresh
        self._positions = positions
        self._watch = ProgressWatch(stuck_after)
        self._task: asyncio.Task[None] | None = None

    def problems(self) -> list[str]:
        """Why the process is not ready as far as Kafka goes (empty: ready)."""
        if not self.reachable:
            return [f"broker not reachable: {self.error}"]
        problems = []
        if self.cluster is not None and self.cluster.offline:
            offline = [p.partition for p in self.cluster.offline]
            problems.append(f"partitions {offline} of {self.kafka.topic} have no leader")
        if self._positions is not None:
            stuck = self._watch.stuck(self.ends, self._positions(), time.monotonic())
            if stuck:
                problems.append(f"consumer stuck on partitions {stuck} for over {self._watch.stuck_after:g} s")
        return problems

    def details(self) -> dict[str, object]:
        """``/readyz``'s ``kafka`` entry: the brokers listed and the partitions short of in-sync replicas."""
        if self.cluster is None:
            return {}
        return {
            "kafka": {
                "brokers": list(self.cluster.brokers),
                "under_replicated": [p.partition for p in self.cluster.under_replicated],
                "offline": [p.partition for p in self.cluster.offline],
            }
        }

    async def start(self) -> None:
        assert self._task is None, "probe already started"
        self._task = asyncio.create_task(self._run(), name="broker-probe")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        consumer = admin = None
        try:
            while True:
                try:
                    async with asyncio.timeout(max(self.interval, 5.0)):
                        if consumer is None or admin is None:
                            partitions = await topic_partitions(self.kafka, wait_seconds=5.0)
                            consumer = make_consumer(self.kafka, group_id=None)
                            await consumer.start()
                            admin = admin_client(self.kafka)
                            await admin.start()
                        ends = await consumer.end_offsets(partitions)
                        self.cluster = await self._described(admin)
                    self.ends = {tp.partition: offset for tp, offset in ends.items()}
                    self.reachable = True
                    if self._positions is not None:
                        self._watch.observe(self.ends, self._positions(), time.monotonic())
                except Exception as exc:  # any failure: not reachable, and fresh clients next time
                    error = reason_of(exc)
                    if self.reachable or error != self.error:
                        log.warning("broker probe failed: %s", error)
                    self.reachable, self.error = False, error
                    await _close(consumer, admin)
                    consumer = admin = None
                await asyncio.sleep(self.interval)
        finally:
            await _close(consumer, admin)

    async def _described(self, admin: Any) -> ClusterView | None:
        """The topic's replicas now; None when no node answered that (the ends did: still reachable)."""
        try:
            return await describe(admin, [self.kafka.topic])
        except Exception as exc:
            log.info("could not describe the cluster: %r", exc)
            return None


def reason_of(exc: BaseException) -> str:
    """What went wrong, as an operator can act on it: the innermost cause (an SSL verification error, a refused
    SASL login) rather than aiokafka's wrapper around it; ``KafkaUnreachableError`` already says it."""
    if isinstance(exc, KafkaUnreachableError):
        return str(exc)
    if isinstance(exc, TimeoutError):  # the probe's own deadline (its context: the call it cancelled)
        return "no answer within the probe's time"
    seen = exc
    while seen.__cause__ is not None or seen.__context__ is not None:
        seen = seen.__cause__ or seen.__context__  # type: ignore[assignment]
    text = str(seen) or type(seen).__name__
    return f"{type(seen).__name__}: {text}" if text != type(seen).__name__ else text


async def _close(*clients: object) -> None:
    for client in clients:
        closing = getattr(client, "stop", None) or getattr(client, "close", None)
        if closing is not None:
            with contextlib.suppress(Exception):
                await closing()
