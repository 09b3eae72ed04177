"""Fan-out: one Kafka consumer per edge feeds every connected client of a tenant.

``publish`` appends an update, encoded once per tenant, to the tenant's resume buffer and never awaits; ``wake``
(once per batch of records) writes through to every client's socket that can take it. Each client takes everything
from its position on (``ws_edge/outbox.py``), filtered by its subscription: a technician that stops matching a client's
filter is sent ``technician_removed`` once. A subscriber that is behind past its limits (a write unfinished for
too long, or too many bytes yet to get) is closed as a slow consumer (4008) and may resume with its cursor;
``sweep`` checks those limits once a second. One whose next updates were evicted before it took them (a burst
larger than the buffer) gets a fresh initial_state instead.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from schemas.ws import CLOSE_SLOW_CONSUMER
from ws_edge import messages, wire
from ws_edge.conflation import conflates, latest_per_technician
from ws_edge.filters import Filter
from ws_edge.messages import Location
from ws_edge.outbox import Message, Note, Outbox, Update
from ws_edge.resume_buffer import ResumeBuffer, TenantResumeBuffer


@dataclass(frozen=True)
class SlowConsumerLimits:
    max_bytes: int
    max_seconds: float


class TooManyConnectionsError(Exception):
    pass


class DirectWriter(Protocol):
    """A connection's socket as the fan-out writes to it (``ws_edge/session.py``)."""

    batched: bool  # protocol v2

    def write_now(self, data: bytes, received_at: float) -> bool:
        """Write ``data`` at once; False when the socket's buffer is full (its session goes on once it drains)."""


# What the first subscriber at a position took: the frames and the received_at of their last update, the position
# after them, the updates conflation left out. By (position, v2).
Alike = dict[tuple[int, bool], tuple[tuple[bytes, float], int, int]]


class Subscriber:
    """One connection as the fan-out sees it: where it is in its tenant's stream, its filter and what its map shows."""

    __slots__ = (
        "_on_close",
        "close_code",
        "close_reason",
        "direct",
        "filter",
        "limits",
        "outbox",
        "resume_buffer",
        "tenant_id",
        "visible",
    )

    def __init__(
        self,
        tenant_id: str,
        resume_buffer: TenantResumeBuffer,
        limits: SlowConsumerLimits,
        on_close: Callable[[], None],
    ) -> None:
        self.tenant_id = tenant_id
        self.resume_buffer = resume_buffer
        self.limits = limits
        self.outbox = Outbox(resume_buffer.next_seq)
        self.filter: Filter | None = None  # None: the whole tenant, without tracking what the map shows
        self.visible: set[str] = set()  # with a filter: the technicians the client's map shows
        self.close_code: int | None = None
        self.close_reason = ""
        self._on_close = on_close
        self.direct: DirectWriter | None = None  # set once its first frames are out

    def write_through(self, now: float, alike: Alike | None = None) -> bool:
        """Write what it has yet to get straight to its socket, when nothing is under way for it; False: its session
        is to do it (a write in progress, no socket yet, or entries evicted meanwhile).

        ``alike`` (``Fanout.wake``): what the subscribers of the tenant that take the whole stream from the same
        position took, by position and protocol. Such a subscriber takes exactly what the first of them took (the
        same frames, the same conflation), so it is taken once, not once per subscriber."""
        direct, outbox = self.direct, self.outbox
        if direct is None or outbox.writing_since is not None or self.close_code is not None:
            return False
        if alike is not None and self.filter is None and not outbox.extras and outbox.exact_until <= outbox.position:
            key = (outbox.position, direct.batched)
            took = alike.get(key)
            if took is None:
                conflated = outbox.conflated
                taken = self.take_wire(now, direct.batched)
                if taken is None:
                    return False
                alike[key] = took = (taken, outbox.position, outbox.conflated - conflated)
            else:
                taken, outbox.position = took[0], took[1]
                outbox.conflated += took[2]
        else:
            taken = self.take_wire(now, direct.batched)
            if taken is None:
                return False
        try:
            written = not taken[0] or direct.write_now(*taken)
        except Exception:  # a socket going away mid-write must not stop the others' writes: its session finds out
            written = False
        if not written:
            outbox.writing_since = now
        return written

    # -- what its session tells it --------------------------------------------------------------------------------

    def attach(self, direct: DirectWriter) -> None:
        """Its first frames are out: the fan-out writes straight through ``direct`` from now on."""
        self.direct = direct

    def wake_with(self, on_work: Callable[[], None] | None) -> None:
        """What to call when it has a frame of its own or entries the fan-out could not write through (None: its
        session is gone)."""
        self.outbox.on_work = on_work

    def detach(self) -> None:
        """Its connection is gone: nothing is written through it, nothing wakes it."""
        self.direct = None
        self.outbox.on_work = None

    def resume_from(self, position: int) -> int:
        """It resumes a client at ``position`` of the tenant's buffer: every update it missed comes next, whole
        (never conflated). Returns how many it missed."""
        self.outbox.position = position
        self.outbox.exact_until = self.resume_buffer.next_seq
        return self.resume_buffer.next_seq - position

    def writing(self, since: float | None) -> None:
        """A write its socket did not take at once is under way since ``since`` (the slow-consumer deadline counts
        from there), or None: the socket drained."""
        self.outbox.writing_since = since

    def held(self) -> bool:
        """A write is under way or it is closing: nothing more is to be written for it now."""
        return self.outbox.writing_since is not None or self.close_code is not None

    def own_frames(self) -> list[str]:
        """The frames of its own waiting to be written (a pong, an answer), in order."""
        return list(self.outbox.extras)

    def closed_by_client(self, code: int) -> None:
        """The client sent its close frame: closing, without the edge's close (its session answers)."""
        if self.close_code is None:
            self.close_code, self.close_reason = code, "closed by the client"

    def has_entries(self) -> bool:
        return self.outbox.position < self.resume_buffer.next_seq

    def send(self, text: str) -> None:
        """Queue a frame of this connection's own (written before the entries it has yet to take)."""
        if self.close_code is None:
            self.outbox.add(text)

    def has_work(self) -> bool:
        """Entries to take, or a write through its socket that is yet to drain."""
        return self.outbox.position < self.resume_buffer.next_seq or self.outbox.writing_since is not None

    def take(self, now: float) -> list[Message] | None:
        """Everything this connection has yet to write, in order, filtered; None when some of it was evicted from
        the resume buffer meanwhile (a burst larger than the buffer): the caller sends a fresh initial_state."""
        taken = self._take(now)
        return None if taken is None else [*taken[0], *taken[1]]

    def take_wire(self, now: float, batched: bool) -> tuple[bytes, float] | None:
        """What ``take`` returns, encoded for the wire (v2: ``batched``); with the ``received_at`` of the last
        update in it (0.0: none)."""
        seq = self.outbox.position
        taken = self._take(now)
        if taken is None:
            return None
        own, entries, whole = taken
        head = wire.encode(own, batched) if own else b""
        body = self.resume_buffer.encoded(seq, batched, entries) if whole else wire.encode(entries, batched)
        last = entries[-1] if entries else None
        return head + body, last.received_at if isinstance(last, Update) else 0.0

    def _take(self, now: float) -> tuple[list[Message], list[Message], bool] | None:
        """Its own frames; the entries it takes, as frames; whether those are every entry from its position on."""
        outbox = self.outbox
        entries = self.resume_buffer.since(outbox.position)
        if entries is None:
            return None
        own: list[Message] = list(outbox.extras)
        outbox.extras.clear()
        exact = max(0, outbox.exact_until - outbox.position)  # what a resuming client missed goes out whole
        whole = True
        if conflates(len(entries) - exact, self.resume_buffer.waited(outbox.position + exact, now)):
            latest, left_out = latest_per_technician(entries[exact:])
            entries = entries[:exact] + latest
            outbox.conflated += left_out
            whole = left_out == 0
        outbox.position = self.resume_buffer.next_seq
        if self.filter is None:
            return own, [entry if isinstance(entry, Update) else entry.text for entry in entries], whole
        taken: list[Message] = []
        for entry in entries:
            technician_id = entry.technician_id
            if isinstance(entry, Note):
                if technician_id in self.visible:
                    taken.append(entry.text)
            elif self.filter.matches(entry.location):
                self.visible.add(technician_id)
                taken.append(entry)
            elif technician_id in self.visible:
                self.visible.discard(technician_id)
                taken.append(messages.technician_removed(technician_id))
        return own, taken, False

    def refilter(self, new: Filter | None, locations: list[Location]) -> list[Location]:
        """Take a new filter; returns the part of ``locations`` (the tenant's map now) the client is to be shown.
        What it had yet to take is skipped: the caller sends the new initial_state, which includes it."""
        self.filter = new
        self.outbox.position = self.resume_buffer.next_seq
        self.outbox.extras.clear()
        if new is None:
            self.visible = set()
            return locations
        shown = [location for location in locations if new.matches(location)]
        self.visible = {str(location["technician_id"]) for location in shown}
        return shown

    def check(self, now: float) -> None:
        if self.close_code is not None:
            return
        outbox, limits = self.outbox, self.limits
        if outbox.writing_since is not None and now - outbox.writing_since > limits.max_seconds:
            self.close(CLOSE_SLOW_CONSUMER, f"slow consumer: a write unfinished for {limits.max_seconds:g} s")
        elif self.resume_buffer.bytes_since(outbox.position) > limits.max_bytes:
            self.close(CLOSE_SLOW_CONSUMER, f"slow consumer: more than {limits.max_bytes} bytes behind")

    def close(self, code: int, reason: str = "") -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
            self.outbox.extras.clear()
            self._on_close()


class Fanout:
    def __init__(
        self, limits: SlowConsumerLimits, max_connections_per_tenant: int = 0, resume_buffer_size: int = 10_000
    ) -> None:
        self.limits = limits
        self.max_per_tenant = max_connections_per_tenant  # 0: no limit
        self.resume_buffer = ResumeBuffer(resume_buffer_size)
        self._by_tenant: dict[str, set[Subscriber]] = {}
        self._touched: set[str] = set()  # tenants with entries appended since the last wake()
        self.messages_sent = 0  # entries appended times the subscribers of their tenant at that moment
        self.slow_disconnects = 0
        self._conflated_before = 0  # by subscribers that are gone
        # The same figures per tenant (``/ws/stats`` for a dispatcher): one entry per tenant ever watched here.
        self._sent_by_tenant: Counter[str] = Counter()
        self._slow_by_tenant: Counter[str] = Counter()
        self._conflated_before_by_tenant: Counter[str] = Counter()

    @contextmanager
    def subscribe(self, tenant_id: str, floor: int, on_close: Callable[[], None]) -> Iterator[Subscriber]:
        """``add`` for the block's duration."""
        subscriber = self.add(tenant_id, floor, on_close)
        try:
            yield subscriber
        finally:
            self.remove(subscriber)

    def add(self, tenant_id: str, floor: int, on_close: Callable[[], None]) -> Subscriber:
        """Register a subscriber, positioned at the end of the tenant's stream, until ``remove``.
        ``floor``: as for ``ResumeBuffer.of``."""
        subscribers = self._by_tenant.setdefault(tenant_id, set())
        if self.max_per_tenant and len(subscribers) >= self.max_per_tenant:
            if not subscribers:
                del self._by_tenant[tenant_id]
            raise TooManyConnectionsError(f"at most {self.max_per_tenant} connections per tenant")

        def closing() -> None:  # counted when decided: a stalled client may take long to be gone
            slow = subscriber.close_code == CLOSE_SLOW_CONSUMER
            self.slow_disconnects += slow
            self._slow_by_tenant[tenant_id] += slow
            on_close()

        subscriber = Subscriber(tenant_id, self.resume_buffer.of(tenant_id, floor), self.limits, closing)
        subscribers.add(subscriber)
        return subscriber

    def remove(self, subscriber: Subscriber) -> None:
        """The connection is gone. Idempotent."""
        tenant_id = subscriber.tenant_id
        subscribers = self._by_tenant.get(tenant_id)
        if subscribers is None or subscriber not in subscribers:
            return
        self._conflated_before += subscriber.outbox.conflated
        self._conflated_before_by_tenant[tenant_id] += subscriber.outbox.conflated
        subscribers.discard(subscriber)
        if not subscribers:
            del self._by_tenant[tenant_id]

    def publish(self, tenant_id: str, update: Update, floor: int) -> None:
        """Append ``update`` to the tenant's stream; ``wake()`` writes it out."""
        self._append(tenant_id, update, floor)

    def notify(self, tenant_id: str, technician_id: str, text: str, floor: int) -> None:
        """Append a frame about one technician; subscribers whose map shows it get it."""
        self._append(tenant_id, Note(technician_id, text, len(text)), floor)

    def broadcast(self, tenant_id: str, text: str) -> None:
        """A frame for every subscriber of the tenant now, whatever its filter, outside the stream (not resumable:
        a client that reconnects gets the state it describes afresh): the fences' changes."""
        for subscriber in self._by_tenant.get(tenant_id, ()):
            subscriber.outbox.add(text)

    def _append(self, tenant_id: str, entry: Update | Note, floor: int) -> None:
        self.resume_buffer.of(tenant_id, floor).append(entry, time.monotonic())
        subscribers = self._by_tenant.get(tenant_id)
        if subscribers:
            self.messages_sent += len(subscribers)
            self._sent_by_tenant[tenant_id] += len(subscribers)
            self._touched.add(tenant_id)

    def wake(self) -> None:
        """Write to the subscribers of the tenants whose streams grew (once per batch of records, not per update):
        straight to their sockets when they can take it; the others' sessions go on when their sockets drain."""
        now = time.monotonic()
        for tenant_id in self._touched:
            alike: Alike = {}
            for subscriber in self._by_tenant.get(tenant_id, ()):
                if not subscriber.write_through(now, alike):
                    subscriber.outbox.wake()
        self._touched.clear()

    def sweep(self) -> None:
        """Close subscribers that are behind past their limits."""
        now = time.monotonic()
        for subscribers in list(self._by_tenant.values()):
            for subscriber in list(subscribers):
                subscriber.check(now)

    def connection_count(self) -> int:
        return sum(len(subscribers) for subscribers in self._by_tenant.values())

    def connections_by_tenant(self) -> dict[str, int]:
        return {tenant: len(subscribers) for tenant, subscribers in self._by_tenant.items()}

    def conflated(self) -> int:
        live = sum(s.outbox.conflated for subscribers in self._by_tenant.values() for s in subscribers)
        return self._conflated_before + live

    def tenant_figures(self, tenant_id: str) -> dict[str, int]:
        """This node's figures for one tenant: what ``/ws/stats`` shows a dispatcher."""
        subscribers = self._by_tenant.get(tenant_id, ())
        return {
            "active_connections": len(subscribers),
            "messages_sent": self._sent_by_tenant[tenant_id],
            "conflated_updates": self._conflated_before_by_tenant[tenant_id]
            + sum(s.outbox.conflated for s in subscribers),
            "slow_disconnects": self._slow_by_tenant[tenant_id],
        }
