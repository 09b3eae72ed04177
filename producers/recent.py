"""The fixes an API process acknowledged lately, so that a client's retry is answered "duplicate" and not
appended again. Bounded (``LOCSTREAM_PRODUCERS_RECENT_FIXES``), per process: a retry that lands on another process,
or comes after the window, is appended again and dropped by every consumer (projector, edge, replay), which
recognise an event by the same identity.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from domain.identity import EventIdentity


class RecentFixes:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._cursors: OrderedDict[EventIdentity, Any] = OrderedDict()

    def cursor_of(self, identity: EventIdentity) -> Any:
        """Where the fix landed when it was acknowledged (the caller's type), if this process remembers it."""
        return self._cursors.get(identity)

    def remember(self, identity: EventIdentity, cursor: Any) -> None:
        if self.capacity <= 0:
            return
        self._cursors[identity] = cursor
        self._cursors.move_to_end(identity)
        while len(self._cursors) > self.capacity:
            self._cursors.popitem(last=False)
