"""The tenants' fences, from the fences topic (``schemas/geofences.py``), followed from its beginning by every
process that needs them (``locstream.compacted_topic``): the ingest API that defines them, the geofence processor
that evaluates fixes against them, the edge that draws them on maps, the projector that finds jobs near a
technician. ``on_change(tenant_id, geofence_id, definition or None)`` is called for each change after start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime

from domain.fence_shapes import polygon_problem
from domain.geofencing import FenceBook
from locstream.compacted_topic import Registry
from locstream.kafka import Record
from locstream.settings import KafkaSettings
from schemas.geofences import (
    FenceEvent,
    GeofenceDefined,
    GeofenceRemoved,
    Polygon,
    decode_fence_event,
    encode_fence_event,
    fence_key,
)

log = logging.getLogger(__name__)

Listener = Callable[[str, str, GeofenceDefined | None], None]


def fence_records(settings: KafkaSettings, fences: Iterable[GeofenceDefined]) -> Iterator[Record]:
    """Fence definitions as the ingest API appends them (``FenceRegistry.put``), for ``append_records``."""
    for fence in fences:
        yield settings.geofences_topic, fence_key(fence.tenant_id, fence.geofence_id), encode_fence_event(fence)


class FenceRegistry(Registry[FenceEvent]):
    """``geometry``: build each fence for the geofence rule (only the processor evaluates fixes); every other
    service keeps summaries (``domain.geofencing.FenceSummary``), a tenth of the memory."""

    def __init__(self, kafka: KafkaSettings, on_change: Listener | None = None, *, geometry: bool = False) -> None:
        self.book = FenceBook(geometry)
        self.on_change = on_change
        super().__init__(kafka, kafka.geofences_topic, decode_fence_event)

    def fold(self, event: FenceEvent, value: bytes) -> None:
        if isinstance(event, GeofenceDefined) and isinstance(event.shape, Polygon):  # defined before today's rules
            ring = [(position[0], position[1]) for position in event.shape.coordinates[0]]
            if (problem := polygon_problem(ring)) is not None:
                log.warning(
                    "fence %s of tenant %s: %s (kept, read the short way)", event.geofence_id, event.tenant_id, problem
                )
        definition = self.book.apply(event, value)
        if self.on_change is not None and self.ready.is_set():
            self.on_change(event.tenant_id, event.geofence_id, definition)

    async def put(self, definition: GeofenceDefined) -> None:
        """Define (or redefine) a fence; returns once this process has applied it."""
        await self.table.append(fence_key(definition.tenant_id, definition.geofence_id), encode_fence_event(definition))

    async def remove(self, tenant_id: str, geofence_id: str) -> bool:
        """False when the tenant has no such fence (another tenant's id is the same as none)."""
        if not self.book.has(tenant_id, geofence_id):
            return False
        event = GeofenceRemoved(tenant_id=tenant_id, geofence_id=geofence_id, at=datetime.now(UTC))
        await self.table.append(fence_key(tenant_id, geofence_id), encode_fence_event(event))
        return True
