"""One event of the location history as read from the topic: the record's bytes, where it is in the log and when
the broker appended it; decoded only as far as it has to be."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Final

import msgspec

from schemas.events import Event, InvalidEventError, decode_event


class _Identity(msgspec.Struct, frozen=True, gc=False):
    """What deduplication and the technician filter need of an event; the other fields are skipped unparsed."""

    event_id: uuid.UUID
    technician_id: str
    recorded_at: datetime


_IDENTITY: Final = msgspec.json.Decoder(_Identity)


class HistoryRecord:
    __slots__ = ("_event", "_identity", "appended_ms", "offset", "partition", "value")

    def __init__(self, value: bytes, partition: int, offset: int, appended_ms: int) -> None:
        self.value = value  # the event's JSON, as the topic holds it
        self.partition = partition
        self.offset = offset
        self.appended_ms = appended_ms  # LogAppendTime
        self._identity: _Identity | None = None
        self._event: Event | None = None

    @property
    def technician_id(self) -> str:
        return self._light().technician_id

    def identity(self) -> tuple[uuid.UUID, str, datetime]:
        """What a retry of the event repeats (``schemas.events.identity`` within one tenant)."""
        light = self._light()
        return light.event_id, light.technician_id, light.recorded_at

    def event(self) -> Event:
        """The whole event, validated; raises ``InvalidEventError``."""
        if self._event is None:
            self._event = decode_event(self.value)
        return self._event

    @property
    def appended_at(self) -> datetime:
        return datetime.fromtimestamp(self.appended_ms / 1000, UTC)

    def _light(self) -> _Identity:
        if self._identity is None:
            try:
                self._identity = _IDENTITY.decode(self.value)
            except msgspec.MsgspecError as exc:
                raise InvalidEventError("invalid", str(exc)) from exc
        return self._identity
