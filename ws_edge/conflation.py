"""The conflation policy: what a client that is behind gets instead of every update. Pure.

Positions are state, not a history: a dispatcher whose map is a second behind gains nothing from the positions a
technician had meanwhile, only from where it is now. So once the oldest entry a client has yet to take has waited
more than ``CONFLATE_AFTER_SECONDS``, what it takes is cut down to the latest update of each technician (and every
note), in topic order. What a resuming client missed is never conflated (the fan-out keeps those entries exact).
"""

from __future__ import annotations

from ws_edge.outbox import Entry, Update

CONFLATE_AFTER_SECONDS = 1.0


def conflates(entries: int, waited_seconds: float) -> bool:
    """Whether a take of ``entries`` whose oldest has waited ``waited_seconds`` is cut to the latest per technician."""
    return entries > 1 and waited_seconds > CONFLATE_AFTER_SECONDS


def latest_per_technician(entries: list[Entry]) -> tuple[list[Entry], int]:
    """The last update of each technician (and every note), in topic order; and how many updates were left out."""
    seen: set[str] = set()
    kept: list[Entry] = []
    for entry in reversed(entries):
        if isinstance(entry, Update):
            if entry.technician_id in seen:
                continue
            seen.add(entry.technician_id)
        kept.append(entry)
    kept.reverse()
    return kept, len(entries) - len(kept)
