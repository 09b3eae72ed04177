"""The resume buffer: per tenant, the latest updates the edge pushed, in topic order. Every client of the tenant
reads from it (the fan-out keeps only each client's position in it), and a client back with its cursor resumes
from it.

A tenant's events all live in one partition (the tenant id is the key), so a cursor is an offset in that partition
and a tenant's updates are buffered in offset order. Entries are numbered (``seq``); a client's position is the
``seq`` of the next entry it has not written. ``floor`` is the lowest offset from which every update of the tenant
is still here: the offset the edge bootstrapped from, raised as old entries are evicted. A cursor at or past
``floor - 1`` can be resumed; an older one gets a fresh initial_state instead. A client whose position falls
behind the oldest entry has lost updates: the fan-out closes it as a slow consumer.
"""

from __future__ import annotations

import itertools
from collections import deque

from ws_edge import wire
from ws_edge.outbox import Entry, Message, Update


class TenantResumeBuffer:
    __slots__ = ("_encoded", "appended_at", "appended_bytes", "before", "entries", "first_seq", "floor")

    def __init__(self, floor: int, size: int) -> None:
        self.floor = floor
        self.entries: deque[Entry] = deque(maxlen=max(1, size))
        self.before: deque[int] = deque(maxlen=max(1, size))  # bytes appended before each entry
        self.appended_at: deque[float] = deque(maxlen=max(1, size))  # monotonic time of each append
        self.first_seq = 0  # seq of entries[0]
        self.appended_bytes = 0
        self._encoded: list[tuple[int, int, bytes]] = [(0, 0, b""), (0, 0, b"")]  # v1, v2: from seq, to seq, bytes

    @property
    def next_seq(self) -> int:
        return self.first_seq + len(self.entries)

    def append(self, entry: Entry, now: float) -> None:
        if len(self.entries) == self.entries.maxlen:
            evicted = self.entries[0]
            self.first_seq += 1
            if isinstance(evicted, Update):
                self.floor = evicted.offset + 1
        self.entries.append(entry)
        self.before.append(self.appended_bytes)
        self.appended_at.append(now)
        self.appended_bytes += entry.size

    def since(self, seq: int) -> list[Entry] | None:
        """The entries from ``seq`` on, in order; None when some of them were evicted."""
        if seq < self.first_seq:
            return None
        count = self.next_seq - seq
        if count <= 0:
            return []
        found = list(itertools.islice(reversed(self.entries), count))
        found.reverse()
        return found

    def encoded(self, seq: int, batched: bool, taken: list[Message]) -> bytes:
        """``taken``, every entry from ``seq`` on as frames, on the wire (``wire.encode``). The clients that keep up
        and take the whole tenant take the same entries at once: they share one encoding."""
        first, end, data = self._encoded[batched]
        if first != seq or end != self.next_seq:
            data = wire.encode(taken, batched)
            self._encoded[batched] = (seq, self.next_seq, data)
        return data

    def bytes_since(self, seq: int) -> int:
        """Bytes of the entries from ``seq`` on (what a client at that position has yet to get)."""
        if seq >= self.next_seq:
            return 0
        return self.appended_bytes - self.before[max(0, seq - self.first_seq)]

    def waited(self, seq: int, now: float) -> float:
        """How long the entry at ``seq`` (the oldest a client has yet to take) has been waiting for it."""
        if seq >= self.next_seq:
            return 0.0
        return now - self.appended_at[max(0, seq - self.first_seq)]

    def seq_after(self, offset: int) -> int | None:
        """Position of the first update after ``offset``; None when the buffer no longer holds all of them."""
        if offset + 1 < self.floor:
            return None
        seq = self.next_seq
        for entry in reversed(self.entries):
            if isinstance(entry, Update) and entry.offset <= offset:
                break
            seq -= 1
        return seq


class ResumeBuffer:
    def __init__(self, size: int) -> None:
        self.size = size
        self._tenants: dict[str, TenantResumeBuffer] = {}

    def of(self, tenant_id: str, floor: int) -> TenantResumeBuffer:
        """The tenant's buffer; ``floor``: from which offset the edge has seen every record of the tenant's
        partition (used when the buffer is created: a tenant with no update since then missed nothing)."""
        updates = self._tenants.get(tenant_id)
        if updates is None:
            updates = self._tenants[tenant_id] = TenantResumeBuffer(floor, self.size)
        return updates
