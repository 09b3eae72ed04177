"""The edge's in-memory view: per tenant, the current state of every technician.

It is kept by the same pure ``apply`` as the projector's table, so bootstrap-then-consume gives
exactly what the projector would have: no stale overwrite, whatever order things arrive in.
"""

from __future__ import annotations

from collections.abc import Iterable

from projector.apply import Position, TechnicianState, apply
from schemas.events import Event
from schemas.ws import TechnicianLocation


def to_location(state: TechnicianState) -> TechnicianLocation | None:
    """The map's view of a technician; None until it has a position."""
    if state.fix is None:
        return None
    return TechnicianLocation(
        technician_id=state.technician_id,
        technician_name=state.display_name,
        latitude=state.fix.latitude,
        longitude=state.fix.longitude,
        last_update=state.fix.recorded_at,
        status=state.status,
    )


class LiveView:
    def __init__(self) -> None:
        self._tenants: dict[str, dict[str, TechnicianState]] = {}

    def load(self, states: Iterable[TechnicianState]) -> None:
        for state in states:
            self._tenants.setdefault(state.tenant_id, {})[state.technician_id] = state

    def apply(self, event: Event, position: Position) -> TechnicianLocation | None:
        """Apply one event; returns the technician's new map entry when what the map shows changed."""
        technicians = self._tenants.setdefault(event.tenant_id, {})
        before = technicians.get(event.technician_id)
        after = apply(before, event, position)
        if after is before:
            return None
        technicians[event.technician_id] = after
        location = to_location(after)
        if location is None or (before is not None and to_location(before) == location):
            return None
        return location

    def locations(self, tenant_id: str) -> list[TechnicianLocation]:
        """Every located technician of one tenant (initial_state and the polling fallback)."""
        found = (to_location(state) for state in self._tenants.get(tenant_id, {}).values())
        return sorted((loc for loc in found if loc is not None), key=lambda loc: loc.technician_id)

    def tenant_count(self) -> int:
        return len(self._tenants)
