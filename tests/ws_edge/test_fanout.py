"""Fan-out, outbox, filters, resume buffer and live view, without I/O."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from projector.apply import Position
from schemas.events import LocationData, LocationRecorded, TechnicianData, TechnicianUpdated
from schemas.ws import CLOSE_SLOW_CONSUMER
from ws_edge import frames
from ws_edge.fanout import Fanout, SlowConsumerLimits, TooManyConnectionsError
from ws_edge.filters import EVERYTHING, Filter, FilterError, parse_subscribe
from ws_edge.outbox import Outbox, Update
from ws_edge.resume_buffer import ResumeBuffer
from ws_edge.view import LiveView

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


LIMITS = SlowConsumerLimits(max_bytes=10_000, max_seconds=5.0)


def _update(technician_id: str, offset: int, latitude: float = 1.0, status: str = "available") -> Update:
    location = {
        "technician_id": technician_id, "technician_name": technician_id, "latitude": latitude, "longitude": 2.0,
        "last_update": T0, "status": status, "stale": False,
    }  # fmt: skip
    return frames.update(location, offset, f"c{offset}")


async def test_publish_reaches_only_the_tenants_subscribers_and_unsubscribes_on_exit() -> None:
    fanout = Fanout(LIMITS)
    with (
        fanout.subscribe("a", lambda: None) as a1,
        fanout.subscribe("a", lambda: None) as a2,
        fanout.subscribe("b", lambda: None) as b1,
    ):
        hello = _update("t1", 0)
        assert fanout.publish("a", hello) == 2
        assert await a1.outbox.take() == [hello] and await a2.outbox.take() == [hello]
        assert len(b1.outbox) == 0
        assert fanout.connection_count() == 3 and fanout.connections_by_tenant() == {"a": 2, "b": 1}
    assert fanout.connection_count() == 0
    assert fanout.publish("a", hello) == 0


async def test_a_client_keeping_up_gets_every_update_and_one_behind_only_the_latest_per_technician() -> None:
    outbox = Outbox()
    for offset, technician in enumerate(["t1", "t2", "t1"]):  # a burst from one poll: nobody is behind yet
        outbox.put_update(_update(technician, offset), now=100.0)
    assert [u.offset for u in await outbox.take() if isinstance(u, Update)] == [0, 1, 2]
    outbox.written(100.01)
    for offset, technician, now in [(3, "t1", 200.0), (4, "t2", 200.1), (5, "t1", 200.5), (6, "t3", 200.6),
                                    (7, "t2", 200.7), (8, "t1", 200.8)]:  # fmt: skip
        outbox.put_update(_update(technician, offset), now)  # nothing written since 200.0: behind from 200.25
    latest = [(u.technician_id, u.offset) for u in await outbox.take() if isinstance(u, Update)]
    assert latest == [("t3", 6), ("t2", 7), ("t1", 8)]  # in topic order, the latest of each
    assert outbox.conflated == 3 and outbox.pending_bytes == 0


async def test_a_subscriber_over_its_byte_limit_is_closed_as_slow_without_touching_others() -> None:
    fanout = Fanout(SlowConsumerLimits(max_bytes=2_000, max_seconds=60.0))
    closed: list[str] = []
    with fanout.subscribe("a", lambda: closed.append("slow")) as slow, fanout.subscribe("a", lambda: None) as fast:
        for offset in range(20):  # distinct technicians: nothing to conflate
            fanout.publish("a", _update(f"t{offset}", offset))
            await fast.outbox.take()
            fast.outbox.written(time.monotonic())
        assert slow.close_code == CLOSE_SLOW_CONSUMER and closed == ["slow"] and "bytes" in slow.close_reason
        assert len(slow.outbox) == 0  # what waited for it is dropped at once
        assert fast.close_code is None
    assert fanout.slow_disconnects == 1


async def test_a_subscriber_behind_for_too_long_is_closed_by_the_sweep() -> None:
    fanout = Fanout(SlowConsumerLimits(max_bytes=1_000_000, max_seconds=0.05))
    with fanout.subscribe("a", lambda: None) as stalled, fanout.subscribe("a", lambda: None) as idle:
        fanout.publish("a", _update("t1", 0))
        taken = await stalled.outbox.take()  # a write starts and never finishes
        assert taken and idle.outbox.waiting_since is not None
        await idle.outbox.take()
        idle.outbox.written(time.monotonic())  # this one finished its write
        stalled.outbox.put("late", "x", time.monotonic())
        await asyncio.sleep(0.06)
        fanout.sweep()
        assert stalled.close_code == CLOSE_SLOW_CONSUMER and "behind" in stalled.close_reason
        assert idle.close_code is None


async def test_a_filtered_subscriber_gets_matching_updates_and_a_removal_when_one_leaves() -> None:
    fanout = Fanout(LIMITS)
    with fanout.subscribe("a", lambda: None) as client:
        now = [_update("t1", 0).location, _update("t2", 1, latitude=50.0).location]
        shown = client.refilter(Filter(bbox=(0.0, 0.0, 10.0, 10.0)), now)
        assert [loc["technician_id"] for loc in shown] == ["t1"]
        fanout.publish("a", _update("t2", 2, latitude=51.0))  # outside, never shown: nothing
        assert len(client.outbox) == 0
        fanout.publish("a", _update("t1", 3, latitude=20.0))  # leaves the box
        fanout.publish("a", _update("t1", 4, latitude=21.0))  # still outside: nothing more
        fanout.publish("a", _update("t2", 5, latitude=5.0))  # enters the box
        taken = await client.outbox.take()
        assert [json.loads(f)["type"] if isinstance(f, str) else f.offset for f in taken] == ["technician_removed", 5]
        assert client.visible == {"t2"}


async def test_too_many_connections_of_a_tenant_are_refused() -> None:
    fanout = Fanout(LIMITS, max_connections_per_tenant=1)
    with fanout.subscribe("a", lambda: None), pytest.raises(TooManyConnectionsError):
        with fanout.subscribe("a", lambda: None):
            pass
    with fanout.subscribe("b", lambda: None):
        assert fanout.connection_count() == 1


def test_filters_combine_and_a_bbox_may_cross_the_antimeridian() -> None:
    location = dict(_update("t1", 0, status="on_job").location, longitude=179.5)
    assert Filter(bbox=(170.0, -5.0, -170.0, 5.0)).matches(location)  # crosses 180
    assert not Filter(bbox=(-170.0, -5.0, 170.0, 5.0)).matches(location)
    assert Filter(technician_ids=frozenset({"t1"}), statuses=frozenset({"on_job"})).matches(location)
    assert not Filter(technician_ids=frozenset({"t1"}), statuses=frozenset({"available"})).matches(location)
    assert parse_subscribe({"type": "subscribe"}) == EVERYTHING
    assert parse_subscribe({"type": "subscribe", "status": ["on_job"]}).statuses == frozenset({"on_job"})
    bad_fields: list[tuple[dict[str, Any], str]] = [
        ({"bbox": [0, 0, 1]}, "bbox"), ({"bbox": [0, 10, 1, 5]}, "bbox"), ({"bbox": [0, 0, 1, float("nan")]}, "bbox"),
        ({"technician_ids": "t1"}, "technician_ids"), ({"status": [1]}, "status"), ({"color": "red"}, "color"),
    ]  # fmt: skip
    for bad, field in bad_fields:
        with pytest.raises(FilterError, match=field):
            parse_subscribe({"type": "subscribe", **bad})


def test_the_resume_buffer_serves_what_a_cursor_missed_until_it_is_evicted() -> None:
    buffer = ResumeBuffer(size=3)
    assert buffer.after("a", 9, floor=10) == []  # nothing happened since the edge started at 10
    assert buffer.after("a", 8, floor=10) is None  # from before this edge started
    for offset in (10, 12, 15):
        buffer.add("a", _update("t1", offset), floor=10)
    after_11 = buffer.after("a", 11, floor=10)
    assert after_11 is not None and [u.offset for u in after_11] == [12, 15]
    buffer.add("a", _update("t1", 20), floor=10)  # evicts 10
    assert buffer.after("a", 9, floor=10) is None
    after_10 = buffer.after("a", 10, floor=10)
    assert after_10 is not None and [u.offset for u in after_10] == [12, 15, 20]
    assert buffer.after("a", 20, floor=10) == []


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


async def test_a_technician_turning_stale_is_reported_once_to_subscribers_that_show_it() -> None:
    view = LiveView(stale_after=timedelta(milliseconds=200))
    now = datetime.now(UTC)
    for technician, recorded_at, offset in (("t1", now, 0), ("t2", now + timedelta(hours=1), 1)):
        event = LocationRecorded(
            event_id=uuid.uuid4(), tenant_id="a", technician_id=technician, recorded_at=recorded_at,
            received_at=now, data=LocationData(latitude=1.0, longitude=2.0),
        )  # fmt: skip
        view.apply(event, Position(0, offset))
    await asyncio.sleep(0.25)  # the wall clock has to pass the threshold: nothing else to wait for
    assert view.turned_stale() == [("a", "t1")]
    assert view.turned_stale() == []  # once
    fanout = Fanout(LIMITS)
    with fanout.subscribe("a", lambda: None) as everyone, fanout.subscribe("a", lambda: None) as filtered:
        filtered.refilter(Filter(technician_ids=frozenset({"t2"})), view.locations("a"))
        fanout.notify("a", "t1", ("status", "t1"), frames.technician_status("t1", stale=True))
        assert await everyone.outbox.take() == ['{"type":"technician_status","technician_id":"t1","stale":true}']
        assert len(filtered.outbox) == 0
        fanout.notify("a", "t2", ("status", "t2"), frames.technician_status("t2", stale=True))
        fanout.publish("a", _update("t2", 5))  # a new fix supersedes the status still waiting
        taken = await filtered.outbox.take()
        assert len(taken) == 1 and isinstance(taken[0], Update) and taken[0].offset == 5
