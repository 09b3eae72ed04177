"""Fan-out: one Kafka consumer per edge feeds every connected client of a tenant.

Each client has a bounded queue. ``publish`` never awaits, so one slow client cannot stall the
others; a client whose queue overflows is told to close as a slow consumer (4008) and may reconnect.
Messages are serialized once per tenant, not once per client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from schemas.ws import CLOSE_SLOW_CONSUMER


class Subscriber:
    """One connection's outbound queue and the reason, if any, it must close."""

    def __init__(self, tenant_id: str, maxsize: int) -> None:
        self.tenant_id = tenant_id
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize)
        self.close_code: int | None = None
        self.closing = asyncio.Event()

    def offer(self, text: str) -> bool:
        if self.close_code is not None:
            return False
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.close(CLOSE_SLOW_CONSUMER)
            return False
        return True

    def close(self, code: int) -> None:
        if self.close_code is None:
            self.close_code = code
            self.closing.set()


class Fanout:
    def __init__(self, queue_size: int) -> None:
        self._queue_size = queue_size
        self._by_tenant: dict[str, set[Subscriber]] = {}
        self.messages_sent = 0

    @contextmanager
    def subscribe(self, tenant_id: str) -> Iterator[Subscriber]:
        """Register a subscriber for the block's duration; it is removed in every case."""
        subscriber = Subscriber(tenant_id, self._queue_size)
        self._by_tenant.setdefault(tenant_id, set()).add(subscriber)
        try:
            yield subscriber
        finally:
            subscribers = self._by_tenant.get(tenant_id)
            if subscribers is not None:
                subscribers.discard(subscriber)
                if not subscribers:
                    del self._by_tenant[tenant_id]

    def publish(self, tenant_id: str, text: str) -> int:
        """Queue ``text`` for every subscriber of ``tenant_id``; returns how many took it."""
        delivered = 0
        for subscriber in self._by_tenant.get(tenant_id, ()):
            delivered += subscriber.offer(text)
        self.messages_sent += delivered
        return delivered

    def close_all(self, code: int) -> None:
        for subscribers in self._by_tenant.values():
            for subscriber in subscribers:
                subscriber.close(code)

    def connection_count(self) -> int:
        return sum(len(subscribers) for subscribers in self._by_tenant.values())
