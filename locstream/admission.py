"""Admission of connections that have not yet shown who they are: a bounded set, oldest shed first. Pure.

A connection is *pending* from the moment it opens until its request head is complete (HTTP) or, for a WebSocket,
until the app has verified its token. A slowloris peer keeps connections pending as long as it likes, and each one
holds a file descriptor: about 20,400 such connections once exhausted a service's 20,000 descriptors, so that
``/healthz`` and new WebSockets failed. Here at most ``cap`` connections may be pending at once (``cap`` is kept
well below the descriptor limit, which leaves room for the authenticated ones). A new connection over the cap sheds
the pending connection that has waited longest: an honest client sends its head within milliseconds and is almost
never the oldest, so under attack new clients still get in while the attacker's connections are shed. Each pending
connection also has a deadline of its own (``locstream/serve.py``).

A burst of honest clients (an edge restarted: thousands of dispatchers reconnecting within a second) goes over the
cap for a moment: over it, only a connection pending for longer than ``grace_seconds`` is shed. Up to ``limit`` (the
bound from the descriptors) the youngest are let be; at ``limit`` the oldest is shed whatever its age.

``locstream/serve.py`` wires this into uvicorn's protocols; this module only counts, chooses and reports.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

RESERVED_DESCRIPTORS = 64  # for the process itself: Kafka clients, the database, log files, the listening socket


class Pending(Protocol):
    """A pending connection as the gate sees it (the protocol objects of ``locstream/serve.py``)."""

    def shed(self) -> None:
        """Close the connection at once: the gate needs its place."""


def pending_cap(configured: int, descriptor_limit: int) -> int:
    """The cap actually used: the configured one, but at most half of the descriptors the process may still open
    (at least 16)."""
    return max(16, min(configured, (descriptor_limit - RESERVED_DESCRIPTORS) // 2))


class PendingGate:
    """The pending connections of one server, in the order they came, at most ``cap`` of them."""

    def __init__(
        self,
        cap: int,
        report_every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        limit: int | None = None,
        grace_seconds: float = 0.0,
    ) -> None:
        self.cap = cap
        self.limit = max(cap, limit if limit is not None else cap)  # never more pending than this, whatever their age
        self.grace_seconds = grace_seconds
        self.shed_total = 0  # connections shed to make room
        self.timed_out_total = 0  # connections closed because their deadline passed
        self._pending: OrderedDict[Pending, float] = OrderedDict()  # -> when it was admitted
        self._report_every = report_every
        self._clock = clock
        self._last_report: float | None = None
        self._unreported = (0, 0)  # shed, timed out since the last report

    def __len__(self) -> int:
        return len(self._pending)

    def admit(self, connection: Pending) -> None:
        """``connection`` is pending now; when that makes one too many, the one that has waited longest is shed (over
        the cap, once it has waited ``grace_seconds``; at ``limit``, at once)."""
        if connection in self._pending:
            return
        now = self._clock()
        while self._pending and (
            len(self._pending) >= self.limit
            or (len(self._pending) >= self.cap and now - next(iter(self._pending.values())) >= self.grace_seconds)
        ):
            oldest, _ = self._pending.popitem(last=False)
            self.shed_total += 1
            self._count(shed=1)
            oldest.shed()
        self._pending[connection] = now

    def release(self, connection: Pending) -> None:
        """``connection`` is no longer pending (it showed who it is, or it is gone). Idempotent."""
        self._pending.pop(connection, None)

    def timed_out(self, connection: Pending) -> None:
        """``connection`` missed its deadline; the caller closes it."""
        if connection in self._pending:
            del self._pending[connection]
            self.timed_out_total += 1
            self._count(timed_out=1)

    def _count(self, shed: int = 0, timed_out: int = 0) -> None:
        """One warning line at most every ``report_every`` seconds, with what happened since the last one."""
        shed, timed_out = self._unreported[0] + shed, self._unreported[1] + timed_out
        now = self._clock()
        if self._last_report is not None and now - self._last_report < self._report_every:
            self._unreported = (shed, timed_out)
            return
        self._last_report, self._unreported = now, (0, 0)
        log.warning(
            "closed connections that did not show who they are: %d shed at the cap of %d pending, %d past their"
            " deadline (%d pending now)",
            shed,
            self.cap,
            timed_out,
            len(self._pending),
        )
