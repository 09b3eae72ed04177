"""Fan-out: one Kafka consumer per edge feeds every connected client of a tenant.

``publish`` never awaits: it puts an update, encoded once per tenant, into the outbox of each subscriber whose
filter it matches (``ws_edge/outbox.py``: bounded, conflating per technician). A technician that stops matching a
client's filter is sent ``technician_removed`` once. A subscriber that stays behind past its limits (bytes
waiting or seconds without a finished write) is closed as a slow consumer (4008) and may resume with its cursor;
``sweep`` checks those limits for clients that get no new frames.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from schemas.ws import CLOSE_SLOW_CONSUMER
from ws_edge import frames
from ws_edge.filters import Filter
from ws_edge.frames import Location
from ws_edge.outbox import Outbox, Update

PONG_KEY = ("pong",)


@dataclass(frozen=True)
class SlowConsumerLimits:
    max_bytes: int
    max_seconds: float


class TooManyConnectionsError(Exception):
    pass


class Subscriber:
    """One connection as the fan-out sees it: its outbox, its filter and the technicians its map shows."""

    __slots__ = ("_on_close", "close_code", "close_reason", "filter", "limits", "outbox", "tenant_id", "visible")

    def __init__(self, tenant_id: str, limits: SlowConsumerLimits, on_close: Callable[[], None]) -> None:
        self.tenant_id = tenant_id
        self.limits = limits
        self.outbox = Outbox()
        self.filter: Filter | None = None  # None: the whole tenant, without tracking what the map shows
        self.visible: set[str] = set()  # with a filter: the technicians the client's map shows
        self.close_code: int | None = None
        self.close_reason = ""
        self._on_close = on_close

    def deliver(self, update: Update, now: float) -> bool:
        """Queue ``update`` if it matches the filter (or ``technician_removed`` if the technician just left it)."""
        if self.close_code is not None:
            return False
        outbox, technician_id = self.outbox, update.technician_id
        if outbox.others:  # an update supersedes a status frame still waiting (stale: false now)
            outbox.discard(("status", technician_id))
        if self.filter is None:
            outbox.put_update(update, now)
        elif self.filter.matches(update.location):
            self.visible.add(technician_id)
            self.outbox.put_update(update, now)
        elif technician_id in self.visible:
            self.visible.discard(technician_id)
            self.outbox.put(("removed", technician_id, update.offset), frames.technician_removed(technician_id), now)
        else:
            return False
        self.check(now)
        return True

    def send(self, key: object, text: str, now: float) -> None:
        """Queue a frame that is not an update (``key``: a later frame of the same key replaces it)."""
        if self.close_code is not None:
            return
        self.outbox.put(key, text, now)
        self.check(now)

    def shows(self, technician_id: str) -> bool:
        return self.filter is None or technician_id in self.visible

    def refilter(self, new: Filter | None, locations: list[Location]) -> list[Location]:
        """Take a new filter; returns the part of ``locations`` (the tenant's map now) the client is to be shown.
        Frames still waiting are dropped: the caller sends the new initial_state, which includes them."""
        self.filter = new
        self.outbox.clear()
        if new is None:
            self.visible = set()
            return locations
        shown = [location for location in locations if new.matches(location)]
        self.visible = {str(location["technician_id"]) for location in shown}
        return shown

    def check(self, now: float) -> None:
        outbox, limits = self.outbox, self.limits
        if outbox.waiting_since is None or self.close_code is not None:  # nothing waits: nothing to check
            return
        if outbox.pending_bytes > limits.max_bytes:
            self.close(CLOSE_SLOW_CONSUMER, f"slow consumer: more than {limits.max_bytes} bytes waiting")
        elif outbox.behind(now) > limits.max_seconds:
            self.close(CLOSE_SLOW_CONSUMER, f"slow consumer: behind for more than {limits.max_seconds:g} s")

    def close(self, code: int, reason: str = "") -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
            self.outbox.clear()
            self._on_close()


class Fanout:
    def __init__(self, limits: SlowConsumerLimits, max_connections_per_tenant: int = 0) -> None:
        self.limits = limits
        self.max_per_tenant = max_connections_per_tenant  # 0: no limit
        self._by_tenant: dict[str, set[Subscriber]] = {}
        self.messages_sent = 0
        self.slow_disconnects = 0
        self._conflated_before = 0  # by subscribers that are gone

    @contextmanager
    def subscribe(self, tenant_id: str, on_close: Callable[[], None]) -> Iterator[Subscriber]:
        """Register a subscriber for the block's duration; it is removed in every case."""
        subscribers = self._by_tenant.setdefault(tenant_id, set())
        if self.max_per_tenant and len(subscribers) >= self.max_per_tenant:
            if not subscribers:
                del self._by_tenant[tenant_id]
            raise TooManyConnectionsError(f"at most {self.max_per_tenant} connections per tenant")

        def closing() -> None:  # counted when decided: a stalled client may take long to be gone
            self.slow_disconnects += subscriber.close_code == CLOSE_SLOW_CONSUMER
            on_close()

        subscriber = Subscriber(tenant_id, self.limits, closing)
        subscribers.add(subscriber)
        try:
            yield subscriber
        finally:
            self._conflated_before += subscriber.outbox.conflated
            subscribers.discard(subscriber)
            if not subscribers:
                self._by_tenant.pop(tenant_id, None)

    def publish(self, tenant_id: str, update: Update) -> int:
        """Queue ``update`` for every subscriber of ``tenant_id`` it concerns; returns how many took it."""
        subscribers = self._by_tenant.get(tenant_id)
        if not subscribers:
            return 0
        now = time.monotonic()
        delivered = 0
        for subscriber in subscribers:
            delivered += subscriber.deliver(update, now)
        self.messages_sent += delivered
        return delivered

    def notify(self, tenant_id: str, technician_id: str, key: object, text: str) -> None:
        """Queue a frame about one technician for the subscribers whose map shows it."""
        now = time.monotonic()
        for subscriber in self._by_tenant.get(tenant_id, ()):
            if subscriber.shows(technician_id):
                subscriber.send(key, text, now)
                self.messages_sent += 1

    def sweep(self) -> None:
        """Close subscribers that are behind past their limits even though nothing new came for them."""
        now = time.monotonic()
        for subscribers in list(self._by_tenant.values()):
            for subscriber in list(subscribers):
                subscriber.check(now)

    def close_all(self, code: int, reason: str = "") -> None:
        for subscribers in list(self._by_tenant.values()):
            for subscriber in list(subscribers):
                subscriber.close(code, reason)

    def connection_count(self) -> int:
        return sum(len(subscribers) for subscribers in self._by_tenant.values())

    def connections_by_tenant(self) -> dict[str, int]:
        return {tenant: len(subscribers) for tenant, subscribers in self._by_tenant.items()}

    def conflated(self) -> int:
        live = sum(s.outbox.conflated for subscribers in self._by_tenant.values() for s in subscribers)
        return self._conflated_before + live
