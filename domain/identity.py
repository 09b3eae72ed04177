"""An event's identity: what a client's retry repeats. Pure."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Final

from schemas.events import Event

EventIdentity = tuple[str, str, datetime, uuid.UUID]  # (tenant_id, technician_id, recorded_at, event_id)


def identity(event: Event) -> EventIdentity:
    """What a retry of ``event`` repeats; two events with one identity are one event, wherever they are in the log.

    Clients choose event ids, so the identity includes what the id is about: an id reused by another tenant, for
    another technician or another time is a different event and can never hide one.
    """
    return event.tenant_id, event.technician_id, event.recorded_at, event.event_id


_CLEAR_VERSION_AND_VARIANT: Final = ~((0xC000 << 48) | (0xF000 << 64))
_VERSION_5_RFC_4122: Final = (0x8000 << 48) | (5 << 76)
_new_object: Final = object.__new__
_set_slot: Final = object.__setattr__


def uuid5(namespace: bytes, name: str) -> uuid.UUID:
    """``uuid.uuid5`` of the namespace given by its 16 bytes (``UUID.bytes``, taken once by the caller), the same
    value, in 40% of its time: the derived events' ids are made per crossing, stop, trip and presence change, and
    ``uuid.UUID.__init__`` checks its arguments in Python (3.2 µs an id here, 1.3 µs so). The UUID is made as
    ``uuid.UUID`` makes its own copies (its two slots set directly); tests/domain/test_identity.py holds the two
    equal."""
    digest = hashlib.sha1(namespace + name.encode()).digest()
    value = int.from_bytes(digest[:16], "big") & _CLEAR_VERSION_AND_VARIANT | _VERSION_5_RFC_4122
    made: uuid.UUID = _new_object(uuid.UUID)
    _set_slot(made, "int", value)
    _set_slot(made, "is_safe", uuid.SafeUUID.unknown)
    return made
