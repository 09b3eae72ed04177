"""At most so many of one kind of work per turn of the event loop; the rest waits for the next turns, in order.

One turn of the loop runs every callback that became ready since the last one. A crowd of connections acting at
once (10,000 opened by one tenant in a few seconds, or dropped at the same moment by a load balancer) made hundreds
or thousands of callbacks ready together, and one turn ran them all: 0.3 s for a burst of openings, 0.6 s for
10,000 closes (the ``close`` system call alone about 20 µs each). Every other tenant's frames waited that long.
With a budget per turn, the loop reads its sockets again between two handfuls, and the crowd is served a little
later instead of everyone else being served much later.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)


class TurnBudget:
    """Runs ``work`` at once while this turn has budget left and nothing waits before it; else queues it."""

    __slots__ = ("_queue", "_ran", "_scheduled", "name", "per_turn")

    def __init__(self, name: str, per_turn: int) -> None:
        self.name = name
        self.per_turn = per_turn
        self._queue: deque[Callable[[], None]] = deque()
        self._ran = 0  # this turn's
        self._scheduled = False  # a call of _next_turn is due

    def __len__(self) -> int:
        """What waits for a later turn."""
        return len(self._queue)

    def run(self, work: Callable[[], None]) -> None:
        if not self._queue and self._ran < self.per_turn:
            self._ran += 1
            self._schedule()  # what counts as this turn ends when the loop gets to its ready callbacks
            work()
            return
        self._queue.append(work)
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        self._scheduled = False
        self._ran = 0
        queue = self._queue
        while queue and self._ran < self.per_turn:
            self._ran += 1
            work = queue.popleft()
            try:
                work()
            except Exception:  # one item's bug must not strand the others
                log.exception("%s: queued work failed", self.name)
        if queue or self._ran:
            self._schedule()  # the rest, or the reset of this turn's count: in the loop's next turn
