"""Paced replays of the history onto a map, against a real broker, the projector and the edge as processes."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from starlette.websockets import WebSocket
from websockets.exceptions import ConnectionClosed, InvalidStatus

from domain.projection import TechnicianState
from locstream.auth import TokenVerifier
from locstream.kafka import ensure_topic
from locstream.work_slots import WorkSlots
from schemas.claims import Role
from schemas.events import Event
from tests.support.events import location, offline, stay
from tests.support.kafka_io import append, clock_past
from tests.support.maps import connect, recv_json
from tests.support.stack import Service, Stack, eventually
from ws_edge.replay_session import ReplaySession
from ws_edge.settings import EdgeSettings

pytestmark = pytest.mark.integration

TENANT = "acme-fiber"
TECHNICIANS = [f"tech-{i}" for i in range(5)]


def _fix(technician: str, at: datetime, latitude: float) -> Event:
    return location(TENANT, technician, at, latitude, 3.0 + latitude / 10)


def _positions(states: list[TechnicianState]) -> dict[str, tuple[float, float, datetime]]:
    return {
        s.technician_id: (s.fix.latitude, s.fix.longitude, s.fix.recorded_at)
        for s in states
        if s.tenant_id == TENANT and s.fix is not None
    }


def _on_map(entries: list[dict[str, Any]]) -> dict[str, tuple[float, float, datetime]]:
    return {
        e["technician_id"]: (e["latitude"], e["longitude"], datetime.fromisoformat(e["last_update"])) for e in entries
    }


async def _applied(stack: Stack, count: int) -> list[TechnicianState]:
    """The projector's table once it has applied ``count`` records of the topic."""

    async def probe() -> list[TechnicianState] | None:
        snapshot = await stack.snapshot()
        return snapshot.states if sum(snapshot.offsets.values()) >= count else None

    return await eventually(probe, timeout=30, what=f"the projector to apply {count} records")


async def _fleet(stack: Stack) -> tuple[datetime, list[TechnicianState], list[TechnicianState]]:
    """Where the fleet was before ``replay_from`` (as the projector had it then), and after two minutes of device
    time appended after it (including a late fix, which must not move its technician back)."""
    now = datetime.now(UTC).replace(microsecond=0)
    earlier = [_fix(t, now - timedelta(seconds=60 - i), latitude=1.0 + i) for i, t in enumerate(TECHNICIANS)]
    await stack.start("projector")
    await clock_past(max(await append(stack.kafka, earlier)))
    before = await _applied(stack, len(earlier))
    replay_from = datetime.now(UTC)
    await clock_past(int(replay_from.timestamp() * 1000))
    seconds = range(0, 120, 3)
    later = [_fix(TECHNICIANS[k % 5], replay_from + timedelta(seconds=k), latitude=10.0 + k / 10) for k in seconds]
    later.append(_fix(TECHNICIANS[0], now - timedelta(seconds=59), latitude=-5.0))  # late: older than tech-0's last
    await append(stack.kafka, later)
    after = await _applied(stack, len(earlier) + len(later))
    return replay_from, before, after


def _z(moment: datetime) -> str:
    """A time as the edge writes it ("…Z")."""
    return moment.isoformat().replace("+00:00", "Z")


def _query(start: datetime, end: datetime, speed: float) -> str:
    return urlencode({"replay_from": start.isoformat(), "replay_to": end.isoformat(), "speed": speed})


async def _play(ws: Any, initial: dict[str, Any]) -> tuple[dict[str, tuple[float, float, datetime]], int]:
    """The map after every update up to ``replay_done``; and how many updates came."""
    shown = {e["technician_id"]: e for e in initial["data"]}
    count = 0
    while (message := await recv_json(ws, 15)).get("type") != "replay_done":
        assert message["type"] == "location_update", message
        shown[message["data"]["technician_id"]] = message["data"]
        count += 1
    assert message["events"] == count
    return _on_map(list(shown.values())), count


async def _open_replay(edge: Service, token: str, query: str) -> tuple[Any, dict[str, Any]]:
    ws = await connect(edge, token, query)
    assert (await recv_json(ws))["type"] == "connected"
    initial = await recv_json(ws, 30)
    assert initial["type"] == "initial_state", initial
    return ws, initial


@pytest.mark.serial
async def test_a_replay_at_speed_60_of_two_minutes_plays_in_about_2_s_from_the_projectors_state_to_its_end(
    stack: Stack,
) -> None:
    replay_from, before, after = await _fleet(stack)
    edge = await stack.start("ws-edge")
    token = stack.token(TENANT, Role.ANALYST)
    ws, initial = await _open_replay(edge, token, _query(replay_from, replay_from + timedelta(minutes=2), 60))
    began = time.monotonic()
    assert _on_map(initial["data"]) == _positions(before)  # the map at replay_from is what the projector had then
    final, updates = await _play(ws, initial)
    took = time.monotonic() - began
    assert 1.9 <= took <= 6.0, took  # 120 s of device time at 60x: 2 s, however fast the events are read
    assert final == _positions(after) and updates == 40  # the late fix moved nothing, so it was not sent


async def test_a_replay_shows_stopped_moving_and_offline_as_the_log_said_them_at_each_moment(stack: Stack) -> None:
    """The derived facts are applied like the fixes: the map at ``replay_from`` has the stop that began before it,
    and the range's facts arrive paced, as updates of the technician they are about."""
    now = datetime.now(UTC).replace(microsecond=0)
    parked_since = now - timedelta(minutes=2)
    earlier = [_fix("tech-0", now - timedelta(seconds=60), 1.0), stay("stop_started", TENANT, "tech-0", parked_since)]
    await stack.start("projector")
    await clock_past(max(await append(stack.kafka, earlier)))
    await _applied(stack, len(earlier))
    replay_from = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    await clock_past(int(replay_from.timestamp() * 1000))
    left, heard = replay_from + timedelta(seconds=10), replay_from + timedelta(seconds=5)
    later: list[Event] = [
        _fix("tech-0", heard, 1.0),
        stay("stop_ended", TENANT, "tech-0", parked_since, left),
        stay("trip_started", TENANT, "tech-0", left),
        offline(TENANT, "tech-0", heard, silent_seconds=600),  # said at its last fix's time, the moment it concerns
    ]
    await append(stack.kafka, later)
    await _applied(stack, len(earlier) + len(later))
    edge = await stack.start("ws-edge")
    ws, initial = await _open_replay(edge, stack.token(TENANT, Role.ANALYST), _query(replay_from, left, 60))
    (at_start,) = initial["data"]
    assert (at_start["motion"], datetime.fromisoformat(at_start["motion_since"])) == ("stopped", parked_since)
    assert at_start["stale"] is False
    seen: list[tuple[str, str, bool]] = []
    while (message := await recv_json(ws, 15)).get("type") != "replay_done":
        data = message["data"]
        seen.append((data["motion"], data["motion_since"], data["stale"]))
    since_left, since_parked = _z(left), _z(parked_since)
    assert seen == [
        ("stopped", since_parked, False),  # the fix at its time (a new last_update; still parked)
        ("moving", since_left, False),  # the stop ended: moving since; the trip starting there changes nothing shown
        ("moving", since_left, True),  # then offline
    ], seen


async def test_pause_holds_the_replay_and_seek_starts_again_from_the_state_of_that_moment(stack: Stack) -> None:
    replay_from, before, after = await _fleet(stack)
    edge = await stack.start("ws-edge")
    token = stack.token(TENANT, Role.ADMIN)
    ws, initial = await _open_replay(edge, token, _query(replay_from, replay_from + timedelta(minutes=2), 120))
    began = time.monotonic()
    await ws.send('{"type": "pause"}')
    await asyncio.sleep(1.0)  # the length of the pause is the scenario, not a wait for something
    await ws.send('{"type": "resume"}')
    final, _ = await _play(ws, initial)
    assert time.monotonic() - began >= 1.0 + 0.9 and final == _positions(after)  # 1 s paused + 120 s at 120x

    await ws.send('{"type": "seek", "to": "' + replay_from.isoformat() + '"}')  # after replay_done: play again
    again = await recv_json(ws, 30)
    assert again["type"] == "initial_state" and _on_map(again["data"]) == _positions(before)
    await ws.send('{"type": "speed", "speed": 0}')  # as fast as the client reads
    final, _ = await _play(ws, again)
    assert final == _positions(after)
    await ws.send('{"type": "seek", "to": "2001-01-01T00:00:00Z"}')
    assert "seek" in (await recv_json(ws))["message"]


async def test_a_replay_needs_a_valid_range_and_an_analyst_or_admin(stack: Stack) -> None:
    edge = await stack.start("ws-edge")
    now = datetime.now(UTC)
    with pytest.raises(InvalidStatus) as refused:
        await connect(edge, stack.token(TENANT, Role.ANALYST), _query(now, now - timedelta(minutes=1), 60))
    assert refused.value.response.status_code == 422 and b"must be before" in refused.value.response.body
    with pytest.raises(InvalidStatus) as too_fast:
        await connect(edge, stack.token(TENANT, Role.ANALYST), _query(now - timedelta(minutes=1), now, 5000))
    assert too_fast.value.response.status_code == 422
    for start, end in (("0001-01-01T00:00:00+14:00", now.isoformat()), (now.isoformat(), "9999-12-31T23:59:59-23:59")):
        with pytest.raises(InvalidStatus) as overflow:  # was a 500: OverflowError in the range's parsing
            await connect(edge, stack.token(TENANT, Role.ANALYST), urlencode({"replay_from": start, "replay_to": end}))
        assert overflow.value.response.status_code == 422 and b"years 1 to 9999" in overflow.value.response.body
    ws = await connect(edge, stack.token(TENANT, Role.DISPATCHER), _query(now - timedelta(minutes=1), now, 60))
    with pytest.raises(ConnectionClosed) as closed:
        await recv_json(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008 and "replay" in closed.value.rcvd.reason


def _endless(now: datetime) -> str:
    """A replay that never reaches its end: it waits for the clock after its last event (the attack's shape)."""
    return _query(now - timedelta(minutes=1), datetime(2099, 1, 1, tzinfo=UTC), 1)


async def _closed_with(ws: Any, timeout: float = 15.0) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await recv_json(ws, timeout)
    assert closed.value.rcvd is not None, "dropped without a close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def _replay_sessions(edge: Service) -> float:
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"{edge.url}/metrics", headers=edge.admin_headers)).text
    (line,) = [line for line in metrics.splitlines() if line.startswith("locstream_edge_replay_sessions ")]
    return float(line.split()[1])


async def test_a_replay_is_closed_4001_when_its_token_expires_unless_a_fresh_one_came(stack: Stack) -> None:
    stack.env["LOCSTREAM_EDGE_TOKEN_EXPIRY_LEEWAY_SECONDS"] = "0"
    edge = await stack.start("ws-edge")
    now = datetime.now(UTC)
    lapsing, _ = await _open_replay(edge, stack.token(TENANT, Role.ANALYST, ttl=2), _endless(now))
    refreshed, _ = await _open_replay(edge, stack.token(TENANT, Role.ANALYST, ttl=2), _endless(now))
    await refreshed.send(json.dumps({"type": "auth", "token": stack.token(TENANT, Role.ANALYST, ttl=600)}))
    assert await _closed_with(lapsing) == (4001, "token expired")
    await refreshed.send("ping")
    assert await recv_json(refreshed) == {"type": "pong"}  # past the first token's expiry, still open
    await refreshed.send('{"type": "seek", "to": "' + (now - timedelta(seconds=30)).isoformat() + '"}')
    assert (await recv_json(refreshed, 30))["type"] == "initial_state"  # and still served
    refusals = {
        "another tenant's": stack.token("another-tenant", Role.ANALYST),
        "a dispatcher's": stack.token(TENANT, Role.DISPATCHER),
        "an expired": stack.token(TENANT, Role.ANALYST, ttl=-60),
    }
    for case, token in refusals.items():
        ws, _ = await _open_replay(edge, stack.token(TENANT, Role.ANALYST), _endless(now))
        await ws.send(json.dumps({"type": "auth", "token": token}))
        code, _ = await _closed_with(ws)
        assert code == 1008, case
    assert await _replay_sessions(edge) == 1  # the refreshed one
    await refreshed.close()
    await eventually(lambda: _zero(edge), timeout=10, what="every replay session to be gone")


async def _zero(edge: Service) -> bool:
    return await _replay_sessions(edge) == 0


async def test_nested_controls_close_1007_and_every_session_lets_go_of_its_consumer(stack: Stack) -> None:
    edge = await stack.start("ws-edge", env={"LOCSTREAM_EDGE_MAX_REPLAYS_PER_TENANT": "5"})
    now = datetime.now(UTC)
    nested = "[" * 5_000 + "]" * 5_000
    for _ in range(30):
        ws, _ = await _open_replay(edge, stack.token(TENANT, Role.ANALYST), _endless(now))
        await ws.send(nested)
        code, reason = await _closed_with(ws)
        assert code == 1007 and "nested deeper than 32" in reason
    await eventually(lambda: _zero(edge), timeout=10, what="every replay session to be gone")
    idle = [(await _open_replay(edge, stack.token(TENANT, Role.ANALYST), _endless(now)))[0] for _ in range(5)]
    assert await _replay_sessions(edge) == 5
    edge.process.send_signal(signal.SIGTERM)  # with replays under way: they are closed, the edge stops
    # uvicorn re-raises SIGTERM once it has shut down: the exit status says SIGTERM, the log a complete shutdown
    assert await asyncio.to_thread(edge.process.wait, 20) == -signal.SIGTERM
    assert "Application shutdown complete" in edge.log()
    for ws in idle:
        code, _ = await _closed_with(ws)
        assert code == 1012
    assert "Traceback" not in edge.log()


async def test_replays_are_capped_per_tenant_and_per_node_with_1013_and_a_retry_hint(stack: Stack) -> None:
    edge = await stack.start(
        "ws-edge", env={"LOCSTREAM_EDGE_MAX_REPLAYS_PER_TENANT": "2", "LOCSTREAM_EDGE_MAX_REPLAYS": "3"}
    )
    now = datetime.now(UTC)
    playing = [(await _open_replay(edge, stack.token(TENANT, Role.ANALYST), _endless(now)))[0] for _ in range(2)]
    ws = await connect(edge, stack.token(TENANT, Role.ANALYST), _endless(now))
    code, reason = await _closed_with(ws)
    assert code == 1013 and "per tenant" in reason and "retry in" in reason
    other, _ = await _open_replay(edge, stack.token("other-fleet", Role.ANALYST), _endless(now))  # not kept out
    ws = await connect(edge, stack.token("third-fleet", Role.ANALYST), _endless(now))
    code, reason = await _closed_with(ws)
    assert code == 1013 and "on this node" in reason
    await playing[0].close()  # one ends: its place is free again
    await eventually(lambda: _count(edge, 2), timeout=10, what="the ended replay's slot to be freed")
    again, _ = await _open_replay(edge, stack.token(TENANT, Role.ANALYST), _endless(now))
    for ws in (again, other, playing[1]):
        await ws.close()


async def _count(edge: Service, sessions: int) -> bool:
    return await _replay_sessions(edge) == sessions


class _ReaderKiller:
    """The ASGI side of one replay's WebSocket: the client connects, and once the session has sent its
    ``initial_state`` the next read raises, as a bug in the control reader would."""

    def __init__(self) -> None:
        self.sent: list[MutableMapping[str, Any]] = []
        self._initial_state = asyncio.Event()
        self._connected = False

    async def receive(self) -> dict[str, Any]:
        if not self._connected:
            self._connected = True
            return {"type": "websocket.connect"}
        await self._initial_state.wait()
        raise RuntimeError("the control reader dies")

    async def send(self, message: MutableMapping[str, Any]) -> None:
        self.sent.append(message)
        if '"initial_state"' in message.get("text", ""):
            self._initial_state.set()


async def test_a_reader_killed_by_an_exception_ends_the_session_and_closes_its_consumer(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    now = datetime.now(UTC)
    await ensure_topic(stack.kafka)
    await append(stack.kafka, [_fix(TECHNICIANS[0], now - timedelta(seconds=30), 1.0)])
    settings = EdgeSettings(kafka=stack.kafka, auth=stack.auth)
    scope = {
        "type": "websocket",
        "path": "/api/v1/field-service/ws/technician-locations",
        "headers": [],
        "query_string": (f"token={stack.token(TENANT, Role.ANALYST)}&{_endless(now)}").encode(),
        "subprotocols": [],
    }
    asgi = _ReaderKiller()
    slots = WorkSlots("replays", 1, 1)
    websocket = WebSocket(scope, asgi.receive, asgi.send)
    session = ReplaySession(websocket, settings, TokenVerifier(stack.auth), slots)
    await asyncio.wait_for(session.run(), 30)  # ends: the player does not outlive the reader
    assert session.reader is not None and session.reader.closed  # its Kafka consumer was stopped
    assert asgi.sent[-1] == {"type": "websocket.close", "code": 1011, "reason": "replay failed"}
    assert slots.total == 0  # its slot was given back
    assert "the control reader dies" in caplog.text
