"""The edge's in-memory view: per tenant, the current state of every technician.

It is kept by the same pure ``apply`` as the projector's table, so bootstrap-then-consume gives
exactly what the projector would have: no stale overwrite, whatever order things arrive in.
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from domain.identity import EventIdentity, identity
from domain.position import Position
from domain.projection import TechnicianState, apply
from schemas.events import Crossed, Event
from ws_edge.messages import Location, encode, geofence_event, location_of


class LiveView:
    def __init__(
        self,
        stale_after: timedelta = timedelta(minutes=10),
        dedupe_window: int = 100_000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``clock``: what "now" is for staleness (a paced replay's own clock, ``replay/pacing.py``)."""
        self.clock = clock
        self._tenants: dict[str, dict[str, TechnicianState]] = {}
        self.stale_after = stale_after
        # Identities of recently applied events, oldest first: a retried event (same identity, later offset) is a
        # no-op, as in the projector, whose history remembers them for longer.
        self._seen: OrderedDict[EventIdentity, None] = OrderedDict()
        self._dedupe_window = dedupe_window
        # When each technician turns stale, at most one entry per technician: (time, tenant, technician).
        self._stale_at: list[tuple[datetime, str, str]] = []
        self._watched: set[tuple[str, str]] = set()
        self._versions: dict[str, int] = {}  # tenant -> changes of its map so far
        self._encoded: dict[str, tuple[int, int, str]] = {}  # tenant -> (version, second, locations_json)

    def _stale_before(self) -> datetime:
        return self.clock() - self.stale_after

    def stale_before(self) -> datetime:
        """A fix recorded before this is stale now."""
        return self._stale_before()

    def version(self, tenant_id: str) -> int:
        """Changes of the tenant's map so far: equal versions, equal maps."""
        return self._versions.get(tenant_id, 0)

    def snapshot(self, tenant_id: str) -> list[TechnicianState]:
        """The tenant's technicians now, in no order (the states are immutable: the list stays as it is)."""
        return list(self._tenants.get(tenant_id, {}).values())

    def load(self, states: Iterable[TechnicianState]) -> None:
        stale_before = self._stale_before()
        for state in states:
            self._tenants.setdefault(state.tenant_id, {})[state.technician_id] = state
            self._versions[state.tenant_id] = self._versions.get(state.tenant_id, 0) + 1
            if state.fix is not None and state.fix.recorded_at >= stale_before:
                self._watch_staleness(state)

    def _watch_staleness(self, state: TechnicianState) -> None:
        key = (state.tenant_id, state.technician_id)
        if state.fix is not None and key not in self._watched:
            self._watched.add(key)
            heapq.heappush(self._stale_at, (state.fix.recorded_at + self.stale_after, *key))

    def turned_stale(self) -> list[tuple[str, str]]:
        """(tenant, technician) of the technicians whose last fix became older than the stale threshold since the
        last call."""
        now, turned = self.clock(), []
        while self._stale_at and self._stale_at[0][0] <= now:
            _, tenant_id, technician_id = heapq.heappop(self._stale_at)
            self._watched.discard((tenant_id, technician_id))
            state = self._tenants.get(tenant_id, {}).get(technician_id)
            if state is None or state.fix is None:
                continue
            if state.fix.recorded_at + self.stale_after <= now:
                turned.append((tenant_id, technician_id))
            else:  # a newer fix came meanwhile: watch it instead
                self._watch_staleness(state)
        return turned

    def _first_sight(self, event: Event) -> bool:
        """Whether this event's identity is new to the dedupe window (and now remembered in it)."""
        seen = identity(event)
        if seen in self._seen:
            return False
        self._seen[seen] = None
        if len(self._seen) > self._dedupe_window:
            self._seen.popitem(last=False)
        return True

    def apply(self, event: Event, position: Position) -> Location | None:
        """Apply one event; returns the technician's new map entry when what the map shows changed."""
        if not self._first_sight(event):
            return None
        technicians = self._tenants.setdefault(event.tenant_id, {})
        before = technicians.get(event.technician_id)
        after = apply(before, event, position)
        if after is before:
            return None
        technicians[event.technician_id] = after
        self._versions[event.tenant_id] = self._versions.get(event.tenant_id, 0) + 1
        stale_before = self._stale_before()
        if after.fix is not None and after.fix.recorded_at >= stale_before:  # else its update already says stale
            self._watch_staleness(after)
        location = location_of(after, stale_before)
        if location is None or (before is not None and location_of(before, stale_before) == location):
            return None
        return location

    def crossing(self, event: Crossed) -> str | None:
        """The ``geofence_event`` frame of a crossing, once per event id (a geofence processor that repeated a
        batch after a crash appended it again)."""
        if not self._first_sight(event):
            return None
        state = self._tenants.get(event.tenant_id, {}).get(event.technician_id)
        return geofence_event(event, state.display_name if state else event.technician_id)

    def locations(self, tenant_id: str) -> list[Location]:
        """Every located technician of one tenant (initial_state and the polling fallback)."""
        stale_before = self._stale_before()
        found = (location_of(state, stale_before) for state in self._tenants.get(tenant_id, {}).values())
        return sorted((loc for loc in found if loc is not None), key=lambda loc: str(loc["technician_id"]))

    def locations_json(self, tenant_id: str) -> str:
        """``locations`` encoded, remembered while the tenant's map is unchanged and for at most a second (the stale
        flags move with the clock): a crowd connecting at once, or reconnecting after a restart, costs one encoding."""
        version, second = self._versions.get(tenant_id, 0), int(time.monotonic())
        cached = self._encoded.get(tenant_id)
        if cached is not None and cached[0] == version and cached[1] == second:
            return cached[2]
        text = encode(self.locations(tenant_id))
        self._encoded[tenant_id] = (version, second, text)
        return text

    def forget_encodings(self) -> None:
        """Drop the encodings older than a second (the edge's sweep): a tenant nobody connects to keeps none."""
        second = int(time.monotonic())
        self._encoded = {tenant: entry for tenant, entry in self._encoded.items() if entry[1] == second}

    def tenant_count(self) -> int:
        return len(self._tenants)
