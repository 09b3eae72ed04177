"""The edge's in-memory view: per tenant, the current state of every technician.

It is kept by the same pure ``apply`` as the projector's table, so bootstrap-then-consume gives
exactly what the projector would have: no stale overwrite, whatever order things arrive in. Whether a technician
is offline, stopped or moving is what the derived facts on the topic say (not this edge's clock), so every edge and
every replay show the same.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable

from domain.identity import EventIdentity, identity
from domain.position import Position
from domain.projection import TechnicianState, apply
from schemas.events import Crossed, Event
from ws_edge.messages import Location, encode, geofence_event, location_of


class LiveView:
    def __init__(self, dedupe_window: int = 100_000) -> None:
        self._tenants: dict[str, dict[str, TechnicianState]] = {}
        # Identities of recently applied events, oldest first: a retried event (same identity, later offset) is a
        # no-op, as in the projector, whose history remembers them for longer.
        self._seen: OrderedDict[EventIdentity, None] = OrderedDict()
        self._dedupe_window = dedupe_window
        self._versions: dict[str, int] = {}  # tenant -> changes of its map so far
        self._encoded: dict[str, tuple[int, int, str]] = {}  # tenant -> (version, second, locations_json)

    def version(self, tenant_id: str) -> int:
        """Changes of the tenant's map so far: equal versions, equal maps."""
        return self._versions.get(tenant_id, 0)

    def snapshot(self, tenant_id: str) -> list[TechnicianState]:
        """The tenant's technicians now, in no order (the states are immutable: the list stays as it is)."""
        return list(self._tenants.get(tenant_id, {}).values())

    def load(self, states: Iterable[TechnicianState]) -> None:
        for state in states:
            self._tenants.setdefault(state.tenant_id, {})[state.technician_id] = state
            self._versions[state.tenant_id] = self._versions.get(state.tenant_id, 0) + 1

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
        """Apply one event (a fix, a profile change, or a derived fact's mark: a stop, a trip, offline or online);
        returns the technician's new map entry when what the map shows changed."""
        if not self._first_sight(event):
            return None
        technicians = self._tenants.setdefault(event.tenant_id, {})
        before = technicians.get(event.technician_id)
        after = apply(before, event, position)
        if after is before:
            return None
        technicians[event.technician_id] = after
        self._versions[event.tenant_id] = self._versions.get(event.tenant_id, 0) + 1
        location = location_of(after)
        if location is None or (before is not None and location_of(before) == location):
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
        found = (location_of(state) for state in self._tenants.get(tenant_id, {}).values())
        return sorted((loc for loc in found if loc is not None), key=lambda loc: str(loc["technician_id"]))

    def locations_json(self, tenant_id: str) -> str:
        """``locations`` encoded, remembered while the tenant's map is unchanged and for at most a second: a crowd
        connecting at once, or reconnecting after a restart, costs one encoding."""
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
