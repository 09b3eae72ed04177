"""Caps on concurrent costly work, per tenant, so that one tenant can neither take the whole process nor keep
another tenant's out.

- ``WorkSlots`` refuses past its caps (history exports, paced replays: at most so many at once per tenant and per
  process). Pure: the caller takes a slot before starting and releases it however the work ends (HTTP 429,
  WebSocket close 1013 with ``retry_after`` when none is free).
- ``TurnsPerTenant`` makes the rest wait their turn (the edge's session openings, the ingest API's batches): work
  that is cheap one at a time but that a crowd of one tenant would otherwise run all in the same turns of the event
  loop, ahead of everyone else's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


class NoSlotError(Exception):
    """No slot is free; ``reason`` says whose cap was reached, ``retry_after`` when to try again (seconds)."""

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass
class Slot:
    """One running piece of work; ``release`` is idempotent."""

    slots: WorkSlots
    tenant_id: str
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.slots._release(self.tenant_id)


@dataclass
class WorkSlots:
    what: str  # "exports", "replays": for the reason
    per_tenant: int
    per_process: int
    retry_after: int = 5
    running: dict[str, int] = field(default_factory=dict)  # per tenant, only tenants with work running
    total: int = 0

    def take(self, tenant_id: str) -> Slot:
        """A slot for ``tenant_id``; ``NoSlotError`` when its cap or the process's is reached."""
        if self.running.get(tenant_id, 0) >= self.per_tenant:
            raise NoSlotError(f"at most {self.per_tenant} {self.what} at once per tenant", self.retry_after)
        if self.total >= self.per_process:
            raise NoSlotError(f"at most {self.per_process} {self.what} at once on this node", self.retry_after)
        self.running[tenant_id] = self.running.get(tenant_id, 0) + 1
        self.total += 1
        return Slot(self, tenant_id)

    def _release(self, tenant_id: str) -> None:
        left = self.running[tenant_id] - 1
        if left:
            self.running[tenant_id] = left
        else:
            del self.running[tenant_id]
        self.total -= 1


class TurnsPerTenant:
    """At most ``limit`` pieces of one tenant's work at once; the rest of that tenant's wait their turn, and another
    tenant's never wait behind them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._waiting: dict[str, tuple[asyncio.Semaphore, int]] = {}  # per tenant: its semaphore and its users

    @contextlib.asynccontextmanager
    async def slot(self, tenant_id: str) -> AsyncIterator[None]:
        semaphore, users = self._waiting.get(tenant_id) or (asyncio.Semaphore(self.limit), 0)
        self._waiting[tenant_id] = semaphore, users + 1
        try:
            async with semaphore:
                yield
        finally:
            semaphore, users = self._waiting[tenant_id]
            if users == 1:
                del self._waiting[tenant_id]
            else:
                self._waiting[tenant_id] = semaphore, users - 1
