"""The fixes an API process acknowledged lately, so that a client's retry is answered "duplicate" and not
appended again. Bounded (``LOCSTREAM_PRODUCERS_RECENT_FIXES``), per process: a retry that lands on another process,
or comes after the window, is appended again and dropped by every consumer (projector, edge, replay), which
recognise an event by the same identity.

Compact: an identity is kept as its 64-bit hash and its position as one integer, about 120 bytes a fix with
the dictionaries' own slots (the identity's strings, datetime and UUID with an ordered dictionary's links cost about
500: an hour's soak at 50 fixes/s grew the API by 83 MB). Two generations instead of an eviction order: the newest
fixes go to the current one; when it holds half the capacity, it becomes the previous one and the one before is
dropped whole. So the process remembers at least the last ``capacity / 2`` fixes and never more than ``capacity``.
Two different fixes of a window of 200,000 share a hash with a chance of about one in 10^9; the hash of a string
is keyed per process (``PYTHONHASHSEED`` left random), so nobody can make one fix of another technician collide
with theirs.
"""

from __future__ import annotations

from domain.identity import EventIdentity
from domain.position import Position

_OFFSET_BITS = 48  # Kafka offsets are 63-bit; 2^48 records of one partition is far beyond any topic's life


class RecentFixes:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._half = max(1, capacity // 2)
        self._current: dict[int, int] = {}
        self._previous: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)

    def cursor_of(self, identity: EventIdentity) -> Position | None:
        """Where the fix landed when it was acknowledged, if this process remembers it."""
        digest = hash(identity)
        packed = self._current.get(digest)
        if packed is None:
            packed = self._previous.get(digest)
            if packed is None:
                return None
        return Position(packed >> _OFFSET_BITS, packed & ((1 << _OFFSET_BITS) - 1))

    def remember(self, identity: EventIdentity, position: Position) -> None:
        if self.capacity <= 0:
            return
        if len(self._current) >= self._half:
            self._previous, self._current = self._current, {}
        self._current[hash(identity)] = position.partition << _OFFSET_BITS | position.offset
