"""Fan-out, outbox, filters, resume buffer and live view, without I/O."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.position import Position
from schemas.events import LocationRecorded
from schemas.ws import CLOSE_SLOW_CONSUMER
from tests.support.events import T0, location, offline
from tests.support.events import profile as technician_profile
from ws_edge import framing, messages
from ws_edge.fanout import Fanout, SlowConsumerLimits, Subscriber, TooManyConnectionsError
from ws_edge.filters import EVERYTHING, Filter, FilterError, parse_subscribe
from ws_edge.outbox import Message, Note, Update
from ws_edge.resume_buffer import ResumeBuffer
from ws_edge.view import LiveView

LIMITS = SlowConsumerLimits(max_bytes=10_000, max_seconds=5.0)


def _update(technician_id: str, offset: int, latitude: float = 1.0, status: str = "available") -> Update:
    location = {
        "technician_id": technician_id,
        "technician_name": technician_id,
        "latitude": latitude,
        "longitude": 2.0,
        "last_update": T0,
        "status": status,
        "stale": False,
    }
    return messages.update(location, offset, f"c{offset}")


def _take(subscriber: Subscriber, now: float | None = None) -> list[Message]:
    taken = subscriber.take(time.monotonic() if now is None else now)
    assert taken is not None
    return taken


def _offsets(taken: Sequence[Message | Note]) -> list[int]:
    return [frame.offset for frame in taken if isinstance(frame, Update)]


async def test_publish_reaches_only_the_tenants_subscribers_and_unsubscribes_on_exit() -> None:
    fanout = Fanout(LIMITS)
    with (
        fanout.subscribe("a", 0, lambda: None) as a1,
        fanout.subscribe("a", 0, lambda: None) as a2,
        fanout.subscribe("b", 0, lambda: None) as b1,
    ):
        hello = _update("t1", 0)
        fanout.publish("a", hello, 0)
        assert a1.has_entries() and _take(a1) == [hello] and _take(a2) == [hello]
        assert not b1.has_entries() and _take(b1) == []
        assert fanout.connection_count() == 3 and fanout.connections_by_tenant() == {"a": 2, "b": 1}
        a1.send(messages.PONG)
        fanout.publish("a", _update("t1", 1), 0)
        assert _take(a1)[0] == messages.PONG  # its own frames first
    assert fanout.connection_count() == 0


async def test_a_session_without_a_socket_is_woken_once_per_batch_of_records() -> None:
    fanout = Fanout(LIMITS)
    with fanout.subscribe("a", 0, lambda: None) as client:
        woken: list[None] = []
        client.outbox.on_work = lambda: woken.append(None)
        for offset in range(3):
            fanout.publish("a", _update(f"t{offset}", offset), 0)
        assert woken == []
        fanout.wake()
        assert len(woken) == 1
        assert _offsets(_take(client)) == [0, 1, 2]


class _Socket:
    """A socket the fan-out writes through; ``room``: how many writes it takes before its buffer is full."""

    def __init__(self, batched: bool, room: int) -> None:
        self.batched, self.room, self.written = batched, room, b""

    def write_now(self, data: bytes, received_at: float) -> bool:
        self.written += data
        self.room -= 1
        return self.room > 0


async def test_wake_writes_through_sockets_that_take_it_and_leaves_full_ones_to_their_writers() -> None:
    fanout = Fanout(LIMITS)
    with fanout.subscribe("a", 0, lambda: None) as v1, fanout.subscribe("a", 0, lambda: None) as v2:
        v1.direct, v2.direct = _Socket(batched=False, room=1), _Socket(batched=True, room=9)
        woken: list[None] = []
        v1.outbox.on_work = lambda: woken.append(None)
        for offset in range(3):
            fanout.publish("a", _update(f"t{offset}", offset), 0)
        fanout.wake()
        kinds = [json.loads(p)["type"] for p in framing.payloads(v1.direct.written)]
        batch = [json.loads(p) for p in framing.payloads(v2.direct.written)]
        assert kinds == ["location_update"] * 3 and batch[0]["type"] == "location_batch" and len(batch) == 1
        assert [item["technician_id"] for item in batch[0]["data"]] == ["t0", "t1", "t2"]
        # v1's socket is full now: its session goes on when it drains; nothing more is written through
        assert len(woken) == 1
        assert v1.outbox.writing_since is not None and v1.has_work() and not v2.has_work()
        fanout.publish("a", _update("t0", 3), 0)
        fanout.wake()
        assert len(list(framing.payloads(v1.direct.written))) == 3 and _offsets(_take(v1)) == [3]
        assert len(list(framing.payloads(v2.direct.written))) == 2


class _BrokenSocket(_Socket):
    def write_now(self, data: bytes, received_at: float) -> bool:
        raise RuntimeError("transport closed")


async def test_a_socket_failing_mid_write_leaves_the_others_written_and_its_writer_woken() -> None:
    fanout = Fanout(LIMITS)
    with fanout.subscribe("a", 0, lambda: None) as broken, fanout.subscribe("a", 0, lambda: None) as fine:
        broken.direct, fine.direct = _BrokenSocket(batched=False, room=9), _Socket(batched=False, room=9)
        fanout.publish("a", _update("t1", 0), 0)
        fanout.publish("a", _update("t2", 1), 0)
        fanout.wake()
        assert len(list(framing.payloads(fine.direct.written))) == 2
        assert broken.outbox.writing_since is not None and broken.has_work()  # its session takes it from here


async def test_a_client_keeping_up_gets_every_update_and_one_behind_only_the_latest_per_technician() -> None:
    fanout = Fanout(LIMITS)
    with fanout.subscribe("a", 0, lambda: None) as client:
        now = time.monotonic()
        for offset, technician in enumerate(["t1", "t2", "t1"]):  # a burst from one poll: nobody is behind yet
            fanout.publish("a", _update(technician, offset), 0)
        assert _offsets(_take(client, now + 0.01)) == [0, 1, 2]
        for offset, technician in [(3, "t1"), (4, "t2"), (5, "t1"), (6, "t3"), (7, "t2"), (8, "t1")]:
            fanout.publish("a", _update(technician, offset), 0)
        latest = [(f.technician_id, f.offset) for f in _take(client, now + 2.0) if isinstance(f, Update)]
        assert latest == [("t3", 6), ("t2", 7), ("t1", 8)]  # behind: in topic order, the latest of each
        assert client.outbox.conflated == 3 and fanout.conflated() == 3


async def test_subscribers_behind_past_their_limits_are_closed_as_slow_without_touching_others() -> None:
    fanout = Fanout(SlowConsumerLimits(max_bytes=2_000, max_seconds=5.0), resume_buffer_size=100)
    closed: list[str] = []
    with (
        fanout.subscribe("a", 0, lambda: closed.append("bytes")) as by_bytes,
        fanout.subscribe("a", 0, lambda: closed.append("time")) as by_time,
        fanout.subscribe("a", 0, lambda: closed.append("evicted")) as evicted,  # never closed: refreshed
        fanout.subscribe("a", 0, lambda: None) as fast,
    ):
        now = time.monotonic()
        by_time.outbox.writing_since = now - 6  # a write that never finishes
        for offset in range(20):  # distinct technicians: nothing to conflate
            fanout.publish("a", _update(f"t{offset}", offset), 0)
            _take(fast)
            _take(by_time)
            _take(evicted)
        fanout.sweep()
        assert by_bytes.close_code == CLOSE_SLOW_CONSUMER and "bytes" in by_bytes.close_reason
        assert by_time.close_code == CLOSE_SLOW_CONSUMER and "unfinished" in by_time.close_reason
        for offset in range(20, 200):  # the buffer holds 100: this one's position is evicted
            fanout.publish("a", _update(f"t{offset}", offset), 0)
            _take(fast)
        assert evicted.take(time.monotonic()) is None  # the session sends it a fresh initial_state
        assert evicted.close_code is None
        assert fast.close_code is None and sorted(closed) == ["bytes", "time"]
    assert fanout.slow_disconnects == 2


async def test_a_filtered_subscriber_gets_matching_updates_and_a_removal_when_one_leaves() -> None:
    fanout = Fanout(LIMITS)
    with fanout.subscribe("a", 0, lambda: None) as client:
        now = [_update("t1", 0).location, _update("t2", 1, latitude=50.0).location]
        shown = client.refilter(Filter(bbox=(0.0, 0.0, 10.0, 10.0)), now)
        assert [loc["technician_id"] for loc in shown] == ["t1"]
        fanout.publish("a", _update("t2", 2, latitude=51.0), 0)  # outside, never shown: nothing
        assert _take(client) == []
        fanout.publish("a", _update("t1", 3, latitude=20.0), 0)  # leaves the box
        fanout.publish("a", _update("t1", 4, latitude=21.0), 0)  # still outside: nothing more
        fanout.publish("a", _update("t2", 5, latitude=5.0), 0)  # enters it
        taken = _take(client)
        assert [json.loads(f)["type"] if isinstance(f, str) else f.offset for f in taken] == ["technician_removed", 5]
        assert client.visible == {"t2"}


async def test_too_many_connections_of_a_tenant_are_refused() -> None:
    fanout = Fanout(LIMITS, max_connections_per_tenant=1)
    with fanout.subscribe("a", 0, lambda: None), pytest.raises(TooManyConnectionsError):
        with fanout.subscribe("a", 0, lambda: None):
            pass
    with fanout.subscribe("b", 0, lambda: None):
        assert fanout.connection_count() == 1


def test_filters_combine_and_a_bbox_may_cross_the_antimeridian() -> None:
    location = dict(_update("t1", 0, status="on_job").location, longitude=179.5)
    assert Filter(bbox=(170.0, -5.0, -170.0, 5.0)).matches(location)  # crosses 180
    assert not Filter(bbox=(-170.0, -5.0, 170.0, 5.0)).matches(location)
    assert Filter(technician_ids=frozenset({"t1"}), statuses=frozenset({"on_job"})).matches(location)
    assert not Filter(technician_ids=frozenset({"t1"}), statuses=frozenset({"available"})).matches(location)
    assert parse_subscribe({"type": "subscribe"}) == EVERYTHING
    assert parse_subscribe({"type": "subscribe", "status": ["on_job"]}).statuses == frozenset({"on_job"})
    online_only = parse_subscribe({"type": "subscribe", "presence": ["online"]})
    assert online_only.matches(location) and not online_only.matches(dict(location, stale=True))
    assert parse_subscribe({"type": "subscribe", "presence": ["offline"]}).matches(dict(location, stale=True))
    bad_fields: list[tuple[dict[str, Any], str]] = [
        ({"presence": ["away"]}, "presence"),
        ({"presence": "online"}, "presence"),
        ({"bbox": [0, 0, 1]}, "bbox"),
        ({"bbox": [0, 10, 1, 5]}, "bbox"),
        ({"bbox": [0, 0, 1, float("nan")]}, "bbox"),
        ({"technician_ids": "t1"}, "technician_ids"),
        ({"status": [1]}, "status"),
        ({"color": "red"}, "color"),
    ]
    for bad, field in bad_fields:
        with pytest.raises(FilterError, match=field):
            parse_subscribe({"type": "subscribe", **bad})


def test_the_resume_buffer_finds_where_a_cursor_continues_until_it_is_evicted() -> None:
    buffer = ResumeBuffer(size=3)
    log = buffer.of("a", floor=10)
    assert log.seq_after(9) == log.next_seq == 0  # nothing happened since the edge started at 10
    assert log.seq_after(8) is None  # from before this edge started
    for offset in (10, 12, 15):
        log.append(_update("t1", offset), 0.0)
    after_11 = log.seq_after(11)
    assert after_11 is not None and _offsets(log.since(after_11) or []) == [12, 15]
    log.append(_update("t1", 20), 0.0)  # evicts 10
    assert log.seq_after(9) is None and log.since(0) is None
    after_10 = log.seq_after(10)
    assert after_10 is not None and _offsets(log.since(after_10) or []) == [12, 15, 20]
    assert log.seq_after(20) == log.next_seq
    assert log.bytes_since(log.next_seq - 1) == _update("t1", 20).size


def _fix(seconds: int, lat: float, tenant: str = "a") -> LocationRecorded:
    return location(tenant, "t1", T0 + timedelta(seconds=seconds), lat, 0.0, received_at=T0)


def test_view_reports_only_changes_the_map_shows_and_never_a_stale_fix() -> None:
    view = LiveView()
    first = view.apply(_fix(10, 1.0), Position(0, 0))
    assert first is not None and first["latitude"] == 1.0
    assert view.apply(_fix(5, 2.0), Position(0, 1)) is None  # late fix: no update pushed
    named = view.apply(
        technician_profile("a", "t1", T0, name="Ada"),
        Position(0, 2),
    )
    assert named is not None and named["technician_name"] == "Ada" and named["latitude"] == 1.0
    assert [loc["technician_name"] for loc in view.locations("a")] == ["Ada"]
    assert view.locations("b") == []


async def test_a_technician_going_offline_is_an_update_for_the_subscribers_that_show_it() -> None:
    now = datetime.now(UTC)
    view = LiveView()
    for technician, offset in (("t1", 0), ("t2", 1)):
        view.apply(location("a", technician, now, 1.0, 2.0), Position(0, offset))
    went = view.apply(offline("a", "t1", now), Position(0, 2))
    assert went is not None and went["stale"] is True and went["technician_id"] == "t1"
    assert view.apply(offline("a", "t1", now), Position(0, 3)) is None  # said again (a repeated batch): no change
    late = view.apply(offline("a", "t2", now - timedelta(minutes=1)), Position(0, 4))
    assert late is None  # t2 has a newer fix than the silence it was said for: not offline
    fanout = Fanout(LIMITS)
    with fanout.subscribe("a", 0, lambda: None) as everyone, fanout.subscribe("a", 0, lambda: None) as filtered:
        filtered.refilter(Filter(technician_ids=frozenset({"t2"})), view.locations("a"))
        fanout.publish("a", messages.update(went, 2, "c2"), 0)
        taken = _take(everyone)
        assert len(taken) == 1 and isinstance(taken[0], Update) and taken[0].location["stale"] is True
        assert _take(filtered) == []  # its map does not show t1


async def test_subscribers_at_one_position_take_once_yet_each_gets_what_it_alone_would() -> None:
    fanout = Fanout(LIMITS)
    with (
        fanout.subscribe("a", 0, lambda: None) as first,
        fanout.subscribe("a", 0, lambda: None) as second,
        fanout.subscribe("a", 0, lambda: None) as batched,
        fanout.subscribe("a", 0, lambda: None) as filtered,
        fanout.subscribe("a", 0, lambda: None) as ponged,
        fanout.subscribe("a", 0, lambda: None) as behind,
    ):
        filtered.refilter(Filter(technician_ids=frozenset({"t1"})), [])
        for subscriber, v2 in ((first, False), (second, False), (batched, True), (filtered, False), (ponged, False)):
            subscriber.direct = _Socket(batched=v2, room=99)
        fanout.publish("a", _update("t0", 0), 0)
        behind.direct = _Socket(batched=False, room=99)  # it joins the writes one update later than the others
        behind.outbox.position = 0
        fanout.wake()
        for subscriber in (first, second, batched, filtered, ponged):  # the others, in step again
            assert subscriber.outbox.position == 1
        ponged.send(messages.PONG)  # a frame of its own: it does not take what the others took
        for offset in range(1, 4):  # t1 three times, then t2, all behind by more than a second: conflated
            fanout.publish("a", _update("t1" if offset < 3 else "t2", offset), 0)
        fanout.resume_buffer.of("a", 0).appended_at[1] -= 5
        fanout.wake()

        def kinds(subscriber: Subscriber) -> list[tuple[str, list[str]]]:
            assert isinstance(subscriber.direct, _Socket)
            messages_ = [json.loads(p) for p in framing.payloads(subscriber.direct.written)]
            items = [m.get("data", []) for m in messages_]
            ids = [[d["technician_id"] for d in (data if isinstance(data, list) else [data])] for data in items]
            return [(m["type"], found) for m, found in zip(messages_, ids, strict=True)]

        assert first.direct.written == second.direct.written  # type: ignore[union-attr]
        assert kinds(first) == [("location_update", ["t0"]), ("location_update", ["t1"]), ("location_update", ["t2"])]
        assert first.outbox.conflated == second.outbox.conflated == 1
        assert kinds(batched) == [("location_batch", ["t0"]), ("location_batch", ["t1", "t2"])]
        assert batched.outbox.conflated == 1
        assert kinds(filtered) == [("location_update", ["t1"])]  # t1 only, its latest
        assert kinds(ponged)[1] == ("pong", []) and kinds(ponged)[2:] == kinds(first)[1:]
        assert len(kinds(behind)) == 3 and behind.outbox.position == first.outbox.position == 4
