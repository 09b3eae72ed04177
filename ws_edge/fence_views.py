"""Which of a tenant's fences a map gets: all of them up front when they are few, else those of the view it asks
for with ``{"type": "fences", "bbox": [west, south, east, north]}``.

A tenant of 2,300 fences of 1,000 positions each made every new dispatcher's first frames 53 MB, encoded afresh for
each. Now a new map gets its tenant's fences up front only while they cost at most ``UP_FRONT_POSITIONS`` (each
fence its positions, at least 100: ``schemas.geofences.fence_cost``, so 500 circles at most; about 1 MB of
frames); beyond that it asks for the fences of its view, and gets at most ``VIEW_POSITIONS`` positions' worth
(about 1 MB) an answer, the fences whose boxes meet the view, by id. Changes still reach every map of the tenant as
they happen (one frame, encoded once).
"""

from __future__ import annotations

from collections.abc import Iterator

from domain.geofencing import FenceBook, FenceSummary
from schemas.geofences import fence_wire
from ws_edge import messages
from ws_edge.filters import parse_bbox

UP_FRONT_POSITIONS = 50_000
VIEW_POSITIONS = 50_000
FENCES_INTERVAL = 0.5  # seconds between two answers to one connection's fences requests


def fences_up_front(book: FenceBook | None, tenant_id: str) -> list[str]:
    """The ``geofence_updated`` frames a new map gets after its first frames: all its tenant's, or none when they
    hold more than ``UP_FRONT_POSITIONS`` positions (the map then asks for its view's)."""
    # The book keeps each tenant's cost as fences come and go: summed here per new map, 10,000 maps of a tenant of
    # 1,000 fences made 10,000,000 calls and turns of the edge's loop of 0.3 s.
    if book is None or book.cost.get(tenant_id, 0) > UP_FRONT_POSITIONS:
        return []
    summaries = book.summaries_of(tenant_id)
    return list(_frames(sorted(summaries, key=lambda summary: summary.geofence_id)))


def fences_in_view(book: FenceBook | None, tenant_id: str, bbox: object) -> list[str]:
    """The frames of the fences whose boxes meet ``bbox``, by id, up to ``VIEW_POSITIONS`` positions;
    ``FilterError`` for a malformed box."""
    west, south, east, north = parse_bbox(bbox)  # west > east: across the antimeridian
    view = (west, south, east if east >= west else east + 360.0, north)
    if book is None:
        return []
    chosen: list[FenceSummary] = []
    positions = 0
    for summary in book.in_view(tenant_id, view, limit=10_000):
        positions += summary.positions
        if positions > VIEW_POSITIONS and chosen:
            break
        chosen.append(summary)
    return list(_frames(chosen))


def _frames(summaries: list[FenceSummary]) -> Iterator[str]:
    for summary in summaries:
        yield messages.geofence_updated(fence_wire(summary.definition()))
