"""One event of the location history as read from the topic: the record's bytes, where it is in the log and when
the broker appended it; decoded only as far as it has to be."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

import msgspec

from schemas.events import Event, FixQuality, InvalidEventError, decode_event


class RecordIdentity(msgspec.Struct, frozen=True, gc=False):
    """What a retry of an event repeats (``domain.identity.identity`` within one tenant), and all that
    deduplication and the technician filter need: the other fields are skipped unparsed. Frozen: hashable, so a set
    of them is the deduplication."""

    event_id: str  # as the producer wrote it (canonical): hashing a str is cheaper than a UUID
    technician_id: str
    recorded_at: datetime


class _FixFields(msgspec.Struct, frozen=True, gc=False):
    latitude: float | None = None
    longitude: float | None = None
    quality: FixQuality | None = None


class FixFacts(msgspec.Struct, frozen=True, gc=False):
    """What judging a fix needs (``domain.projection.Verdicts``), decoded from any event: its type says whether it
    is a fix."""

    type: str
    recorded_at: datetime
    data: _FixFields


_IDENTITY: Final = msgspec.json.Decoder(RecordIdentity)
_FIX: Final = msgspec.json.Decoder(FixFacts)
_IDENTITIES: Final = msgspec.json.Decoder(list[RecordIdentity])


def identities(values: list[bytes]) -> list[RecordIdentity] | None:
    """The identities of many records in one decoding (None when one of them is not an event: decode singly)."""
    try:
        return _IDENTITIES.decode(b"[" + b",".join(values) + b"]")
    except msgspec.MsgspecError:
        return None


class HistoryRecord:
    __slots__ = ("_event", "_identity", "appended_ms", "offset", "partition", "value")

    def __init__(
        self, value: bytes, partition: int, offset: int, appended_ms: int, identity: RecordIdentity | None = None
    ) -> None:
        self.value = value  # the event's JSON, as the topic holds it
        self.partition = partition
        self.offset = offset
        self.appended_ms = appended_ms  # LogAppendTime
        self._identity = identity
        self._event: Event | None = None

    @property
    def technician_id(self) -> str:
        return self._light().technician_id

    def identity(self) -> RecordIdentity:
        """Raises ``InvalidEventError`` when the record is not an event."""
        return self._light()

    def fix(self) -> FixFacts | None:
        """What judging the record needs when it is a fix, else None; raises ``InvalidEventError`` when the record is
        not an event (the whole event is validated when it is a fix)."""
        try:
            facts = _FIX.decode(self.value)
        except msgspec.MsgspecError as exc:
            raise InvalidEventError("undecodable", str(exc)) from exc
        if facts.type != "location_recorded":
            return None
        if facts.data.latitude is None or facts.data.longitude is None:
            raise InvalidEventError("invalid", "a location_recorded without its latitude and longitude")
        return facts

    def event(self) -> Event:
        """The whole event, validated; raises ``InvalidEventError``."""
        if self._event is None:
            self._event = decode_event(self.value)
        return self._event

    @property
    def appended_at(self) -> datetime:
        return datetime.fromtimestamp(self.appended_ms / 1000, UTC)

    def _light(self) -> RecordIdentity:
        if self._identity is None:
            try:
                self._identity = _IDENTITY.decode(self.value)
            except msgspec.MsgspecError as exc:
                raise InvalidEventError("invalid", str(exc)) from exc
        return self._identity
