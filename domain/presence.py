"""Online and offline, pure: a technician is offline once no good fix of it has been read for the tenant's
``offline_seconds`` of *watched* time, and online again at its next good fix (docs/online-offline.md).

Watched time is a clock per partition (``PartitionClock``), not the wall clock: it moves with the server time of
the records read from the partition (their ``received_at``) and, while the processor is caught up with the
partition and hearing from the broker, with the wall clock. It never moves more than ``CLOCK_STEP_CAP`` at once, so
time in which nobody watched (the processor down, the broker out of reach and the fixes with it, a backlog read
hours later) does not count against any technician: after a restart or an outage each gets a fresh
``offline_seconds`` to be heard from, and no burst of false offlines follows.
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

CLOCK_STEP_CAP: Final = 5.0  # seconds: the most a partition's watched time moves at once (below any threshold: >= 10 s)


@dataclass(slots=True)
class PartitionClock:
    """A partition's watched time (``watched``, seconds) and the server or wall time it last moved to (``at``)."""

    watched: float = 0.0
    at: float | None = None

    def advance(self, now: float) -> None:
        """To ``now`` (seconds since the epoch); never back, and at most ``CLOCK_STEP_CAP`` at once."""
        if self.at is None:
            self.at = now
        elif now > self.at:
            self.watched += min(now - self.at, CLOCK_STEP_CAP)
            self.at = now


@dataclass(slots=True)
class Presence:
    """What the rule knows of a technician: when (watched time) its last good fix was read, the newest device time
    of its good fixes, that fix's event id, whether it is online, and the last silence (known by the fix before it)
    whose end was said."""

    heard_at: float
    last_seen: float
    fix_id: uuid.UUID
    partition: int
    online: bool = True
    ended: uuid.UUID | None = None


@dataclass(slots=True)
class Presences:
    """Every technician's presence, and per partition a heap of when (in its watched time) each online technician
    may have gone silent: one entry per technician, moved on lazily when it comes due and the technician was heard
    since."""

    by_key: dict[tuple[str, str], Presence] = field(default_factory=dict)
    _due: dict[int, list[tuple[float, str, str]]] = field(default_factory=dict)
    _pending: set[tuple[str, str]] = field(default_factory=set)

    def heard(
        self, key: tuple[str, str], partition: int, watched: float, at: float, fix_id: uuid.UUID, offline_seconds: float
    ) -> Presence | None:
        """A good fix read: the technician is online. Returns its presence before, when it was offline (it is back)."""
        before = self.by_key.get(key)
        back = before is not None and not before.online
        ended = before.fix_id if back and before is not None else before.ended if before is not None else None
        if before is None or at >= before.last_seen:
            self.by_key[key] = Presence(watched, at, fix_id, partition, True, ended)
        else:  # a late fix: heard from, but its newest fix is still the one seen
            self.by_key[key] = Presence(watched, before.last_seen, before.fix_id, partition, True, ended)
        self._watch(key, partition, watched + offline_seconds)
        return before if back else None

    def said_offline(self, key: tuple[str, str], fix_id: uuid.UUID) -> Presence | None:
        """The processor's own ``technician_offline`` (for the silence after ``fix_id``) read back from the log, which
        has the last word. Still online with that fix: the offline was said but the state after it was lost (a crash
        before its commit): offline now. Online with a newer fix, and that silence's end never said (the fix was read
        before the event, by a processor that had lost the offline): returns the presence, whose fix ended it, and
        marks it said. Otherwise nothing to do."""
        presence = self.by_key.get(key)
        if presence is None or not presence.online or presence.ended == fix_id:
            return None
        if presence.fix_id == fix_id:
            presence.online = False
            return None
        presence.ended = fix_id
        return presence

    def stopped(self, key: tuple[str, str], at: float) -> Presence | None:
        """The technician's app said it stopped tracking at ``at`` (device time): offline now, unless it was offline
        already or has a newer good fix (it resumed since). Returns its presence when that made it offline."""
        presence = self.by_key.get(key)
        if presence is None or not presence.online or at < presence.last_seen:
            return None
        presence.online = False
        return presence

    def restore(self, key: tuple[str, str], presence: Presence, offline_seconds: float) -> None:
        self.by_key[key] = presence
        if presence.online:
            self._watch(key, presence.partition, presence.heard_at + offline_seconds)

    def forget(self, partition: int) -> None:
        """Drop the presences read from ``partition`` (it moved to another processor)."""
        gone = [key for key, presence in self.by_key.items() if presence.partition == partition]
        for key in gone:
            del self.by_key[key]
            self._pending.discard(key)
        self._due.pop(partition, None)

    def _watch(self, key: tuple[str, str], partition: int, deadline: float) -> None:
        if key not in self._pending:
            self._pending.add(key)
            heapq.heappush(self._due.setdefault(partition, []), (deadline, *key))

    def silent(self, watched: dict[int, float], offline_seconds_of: Callable[[str], float]) -> list[tuple[str, str]]:
        """The technicians that went offline by now (``watched``: each partition's watched time), marked so. A
        tenant's threshold is read when a technician comes due: a change applies from then on."""
        gone: list[tuple[str, str]] = []
        for partition, due in self._due.items():
            now = watched.get(partition)
            if now is None:
                continue
            while due and due[0][0] <= now:
                _, tenant, technician = heapq.heappop(due)
                key = (tenant, technician)
                presence = self.by_key.get(key)
                if presence is None or not presence.online or presence.partition != partition:
                    self._pending.discard(key)
                    continue
                deadline = presence.heard_at + offline_seconds_of(tenant)
                if deadline <= now:
                    presence.online = False
                    self._pending.discard(key)
                    gone.append(key)
                else:  # heard from since: due later
                    heapq.heappush(due, (deadline, *key))
        return gone
