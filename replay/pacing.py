"""The clock of a paced replay: replay time runs ``speed`` times as fast as real time from where it starts, stops
while paused and jumps on a seek. Events are due when replay time reaches their device time (``recorded_at``);
speed 0 means as fast as the client reads. Pure: real time is passed in (``time.monotonic()``).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

MAX_SPEED = 1000.0


class ReplayClock:
    def __init__(self, start: datetime, speed: float, now: float) -> None:
        if not 0 <= speed <= MAX_SPEED:
            raise ValueError(f"speed must be between 0 and {MAX_SPEED:g}")
        self.speed = speed
        self.paused = False
        self._anchor = start  # replay time at real time _since
        self._since = now

    def at(self, now: float) -> datetime:
        """Replay time now (it does not move at speed 0: there every event is due at once)."""
        if self.paused or self.speed == 0:
            return self._anchor
        return self._anchor + timedelta(seconds=(now - self._since) * self.speed)

    def due_in(self, moment: datetime, now: float) -> float:
        """Real seconds until replay time reaches ``moment``: 0 when it has; infinite while paused."""
        if self.speed == 0:
            return 0.0
        if self.paused:
            return math.inf
        return max(0.0, (moment - self.at(now)).total_seconds() / self.speed)

    def pause(self, now: float) -> None:
        if not self.paused:
            self._anchor, self._since, self.paused = self.at(now), now, True

    def resume(self, now: float) -> None:
        if self.paused:
            self._since, self.paused = now, False

    def set_speed(self, speed: float, now: float) -> None:
        if not 0 <= speed <= MAX_SPEED:
            raise ValueError(f"speed must be between 0 and {MAX_SPEED:g}")
        self._anchor, self._since, self.speed = self.at(now), now, speed

    def seek(self, moment: datetime, now: float) -> None:
        self._anchor, self._since = moment, now
