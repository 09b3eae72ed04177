"""Fan-out registry and live view, without I/O."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from projector.apply import Position
from schemas.events import LocationData, LocationRecorded, TechnicianData, TechnicianUpdated
from schemas.ws import CLOSE_SLOW_CONSUMER
from ws_edge.fanout import Fanout
from ws_edge.view import LiveView

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


async def test_publish_reaches_only_the_tenants_subscribers_and_unsubscribes_on_exit() -> None:
    fanout = Fanout(queue_size=10)
    with fanout.subscribe("a") as a1, fanout.subscribe("a") as a2, fanout.subscribe("b") as b1:
        assert fanout.publish("a", "hello") == 2
        assert a1.queue.get_nowait() == "hello" and a2.queue.get_nowait() == "hello"
        assert b1.queue.empty()
        assert fanout.connection_count() == 3
    assert fanout.connection_count() == 0
    assert fanout.publish("a", "nobody") == 0


async def test_an_overflowing_subscriber_is_closed_as_slow_without_blocking_others() -> None:
    fanout = Fanout(queue_size=2)
    with fanout.subscribe("a") as slow, fanout.subscribe("a") as fast:
        for i in range(3):
            fanout.publish("a", str(i))
            fast.queue.get_nowait()
        assert slow.close_code == CLOSE_SLOW_CONSUMER and slow.closing.is_set()
        assert fast.close_code is None


def _fix(seconds: int, lat: float, tenant: str = "a") -> LocationRecorded:
    return LocationRecorded(
        event_id=uuid.uuid4(),
        tenant_id=tenant,
        technician_id="t1",
        recorded_at=T0 + timedelta(seconds=seconds),
        received_at=T0,
        data=LocationData(latitude=lat, longitude=0.0),
    )


def test_view_reports_only_changes_the_map_shows_and_never_a_stale_fix() -> None:
    view = LiveView()
    first = view.apply(_fix(10, 1.0), Position(0, 0))
    assert first is not None and first["latitude"] == 1.0
    assert view.apply(_fix(5, 2.0), Position(0, 1)) is None  # late fix: no update pushed
    named = view.apply(
        TechnicianUpdated(
            event_id=uuid.uuid4(),
            tenant_id="a",
            technician_id="t1",
            recorded_at=T0,
            received_at=T0,
            data=TechnicianData(name="Ada"),
        ),
        Position(0, 2),
    )
    assert named is not None and named["technician_name"] == "Ada" and named["latitude"] == 1.0
    assert [loc["technician_name"] for loc in view.locations("a")] == ["Ada"]
    assert view.locations("b") == []
