"""Time on site, the pure core: a job's crossings (entered or exited, per technician and fence) paired into visits.

Each technician's crossings of each fence are taken in log order (their offsets: the geofence processor appends
them in the order of the fixes); an enter opens a visit, the next exit closes it. A job's time on site is the sum
of its visits (a visit still open counts up to ``now``), None before any arrival.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Crossing:
    technician_id: str
    geofence_id: str
    entered: bool
    at: datetime
    partition: int
    offset: int


def time_on_site(crossings: Iterable[Crossing], now: datetime) -> float | None:
    """Seconds on site over every visit; None when nobody has arrived."""
    ordered = sorted(crossings, key=lambda c: (c.technician_id, c.geofence_id, c.partition, c.offset))
    total, arrived = 0.0, False
    opened: dict[tuple[str, str], datetime] = {}
    for crossing in ordered:
        key = (crossing.technician_id, crossing.geofence_id)
        if crossing.entered:
            arrived = True
            opened.setdefault(key, crossing.at)
        elif key in opened:
            total += max(0.0, (crossing.at - opened.pop(key)).total_seconds())
    for since in opened.values():
        total += max(0.0, (now - since).total_seconds())
    return total if arrived else None


def formatted(seconds: float) -> str:
    """The origin's ``time_on_site_formatted``: ``"1h 5m 3s"``, or ``"5m 3s"`` under an hour."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes}m {secs}s" if hours else f"{minutes}m {secs}s"
