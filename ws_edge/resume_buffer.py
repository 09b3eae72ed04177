"""The resume buffer: per tenant, the latest updates the edge pushed, so a client back with its cursor gets exactly
what it missed.

A tenant's events all live in one partition (the tenant id is the key), so a cursor is an offset in that partition
and a tenant's updates are buffered in offset order. ``floor`` is the lowest offset from which every update of the
tenant is still here: the offset the edge bootstrapped from, raised as old updates are evicted. A cursor at or past
``floor - 1`` can be resumed; an older one gets a fresh initial_state instead.
"""

from __future__ import annotations

from collections import deque

from ws_edge.outbox import Update


class TenantUpdates:
    __slots__ = ("floor", "updates")

    def __init__(self, floor: int, size: int) -> None:
        self.floor = floor
        self.updates: deque[Update] = deque(maxlen=size)

    def append(self, update: Update) -> None:
        if len(self.updates) == self.updates.maxlen:
            self.floor = self.updates[0].offset + 1
        self.updates.append(update)

    def after(self, offset: int) -> list[Update] | None:
        """The updates after ``offset`` in order, or None when some of them are no longer here."""
        if offset + 1 < self.floor:
            return None
        missed: list[Update] = []
        for update in reversed(self.updates):
            if update.offset <= offset:
                break
            missed.append(update)
        missed.reverse()
        return missed


class ResumeBuffer:
    def __init__(self, size: int) -> None:
        self.size = size
        self._tenants: dict[str, TenantUpdates] = {}

    def add(self, tenant_id: str, update: Update, floor: int) -> None:
        """Remember ``update``; ``floor``: from which offset the edge has seen every record of the tenant's
        partition (used when this is the tenant's first update)."""
        updates = self._tenants.get(tenant_id)
        if updates is None:
            updates = self._tenants[tenant_id] = TenantUpdates(floor, self.size)
        updates.append(update)

    def after(self, tenant_id: str, offset: int, floor: int) -> list[Update] | None:
        """What a client of ``tenant_id`` missed after ``offset``; None when the buffer no longer covers it.
        ``floor`` as for ``add``: a tenant with no update since then missed nothing."""
        updates = self._tenants.get(tenant_id)
        if updates is None:
            return [] if offset + 1 >= floor else None
        return updates.after(offset)
