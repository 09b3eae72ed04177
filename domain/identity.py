"""An event's identity: what a client's retry repeats. Pure."""

from __future__ import annotations

import uuid
from datetime import datetime

from schemas.events import Event

EventIdentity = tuple[str, str, datetime, uuid.UUID]  # (tenant_id, technician_id, recorded_at, event_id)


def identity(event: Event) -> EventIdentity:
    """What a retry of ``event`` repeats; two events with one identity are one event, wherever they are in the log.

    Clients choose event ids, so the identity includes what the id is about: an id reused by another tenant, for
    another technician or another time is a different event and can never hide one.
    """
    return event.tenant_id, event.technician_id, event.recorded_at, event.event_id
