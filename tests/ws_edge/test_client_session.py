"""``ClientSession`` with a transport double, byte in, byte out, the way python-websockets tests its protocol: the
upgrade, the token (in the URL, as the first message, late, forged), pings both ways, the close handshake and
backpressure, with the edge's real parts in this process and no broker (the feed is positioned by hand)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import struct
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from websockets.frames import Frame, Opcode

from domain.partitioning import tenant_partition
from domain.position import Position
from locstream.admission import PendingGate
from locstream.auth import TokenVerifier, issue_token
from locstream.settings import AuthSettings
from locstream.websocket_upgrade import UpgradeRequest
from schemas.claims import Role
from tests.support.events import location
from ws_edge import messages
from ws_edge.app import Edge
from ws_edge.session import ClientSession
from ws_edge.settings import EdgeSettings

SECRET = "client-session-test-secret-" * 3
AUTH = AuthSettings(jwt_secret=SECRET)
PATH = "/api/v1/field-service/ws/technician-locations"
PARTITIONS = 6
WireFrame = tuple[int, bytes]  # (opcode, payload) of a frame the server wrote
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Changes:
    """Set whenever a transport double is written to or ended (made anew in each test's loop)."""

    event = asyncio.Event()


class Transport:
    """What the session writes, and what it did to the connection: reading paused, closed, aborted. ``full()`` and
    ``drain()`` play the kernel's buffer filling up and draining (the session's flow control)."""

    def __init__(self) -> None:
        self.session: ClientSession | None = None
        self.written = bytearray()
        self.reading, self.closed, self.aborted = True, False, False
        self.room: int | None = None  # bytes it takes before it is full (None: no end)

    def write(self, data: Any) -> None:
        assert not self.closed, "written after close"
        self.written += bytes(data)
        Changes.event.set()
        if self.room is not None:
            self.room -= len(data)
            if self.room <= 0:
                assert self.session is not None
                self.session.pause_writing()  # past its high-water mark, as asyncio's transports say

    def drain(self) -> None:
        """The client read everything: room again."""
        assert self.session is not None
        self.room = None
        self.session.resume_writing()

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self._end()

    def abort(self) -> None:
        self.aborted = True
        self._end()

    def _end(self) -> None:
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().call_soon(self._lost)
            Changes.event.set()

    def _lost(self) -> None:
        assert self.session is not None
        self.session.connection_lost(None)
        Changes.event.set()

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


class Client:
    """The client's end: masked frames in, the server's frames and HTTP head out."""

    def __init__(self, session: ClientSession, transport: Transport, key: str) -> None:
        self.session, self.transport, self.key = session, transport, key  # key: its Sec-WebSocket-Key
        self._read = 0

    def send(self, opcode: Opcode, data: bytes, fin: bool = True) -> None:
        self.session.data_received(Frame(opcode, data, fin).serialize(mask=True, extensions=[]))

    def send_text(self, text: str) -> None:
        self.send(Opcode.TEXT, text.encode())

    def head(self) -> str:
        written = bytes(self.transport.written)
        end = written.index(b"\r\n\r\n") + 4
        self._read = max(self._read, end)
        return written[:end].decode()

    def frames(self) -> list[tuple[int, bytes]]:
        """The server's frames written since the last call (opcode, payload); unmasked, unfragmented."""
        data = bytes(self.transport.written)
        if not self._read:  # the frames begin after the HTTP head
            if b"\r\n\r\n" not in data:
                return []
            self.head()
        out, at = [], self._read
        while at + 2 <= len(data):
            opcode, size, at_payload = data[at] & 0x0F, data[at + 1] & 0x7F, at + 2
            if size == 126:
                size, at_payload = struct.unpack_from("!H", data, at + 2)[0], at + 4
            elif size == 127:
                size, at_payload = struct.unpack_from("!Q", data, at + 2)[0], at + 10
            if at_payload + size > len(data):
                break
            out.append((opcode, data[at_payload : at_payload + size]))
            at = at_payload + size
        self._read = at
        return out

    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(payload) for opcode, payload in self.frames() if opcode == Opcode.TEXT]

    async def frames_until(
        self, enough: Callable[[list[tuple[int, bytes]]], bool], what: str
    ) -> list[tuple[int, bytes]]:
        """The frames written from now until ``enough(frames)``."""
        frames: list[WireFrame] = []

        def check() -> bool:
            frames.extend(self.frames())
            return enough(frames)

        await _until(check, what)
        return frames

    async def messages_until(self, count: int, what: str) -> list[dict[str, Any]]:
        frames = await self.frames_until(lambda got: sum(op == Opcode.TEXT for op, _ in got) >= count, what)
        return [json.loads(payload) for opcode, payload in frames if opcode == Opcode.TEXT]


@pytest.fixture
async def edge() -> AsyncIterator[Edge]:
    Changes.event = asyncio.Event()
    settings = EdgeSettings(
        auth=AUTH, auth_timeout_seconds=0.3, ping_interval_seconds=0.2, ping_timeout_seconds=0.1, client_message_rate=0
    )
    built = Edge.build(settings, TokenVerifier(settings.auth))
    built.feed.position(PARTITIONS, dict.fromkeys(range(PARTITIONS), 0))
    built.feed.ready.set()
    yield built
    await built.sessions.close_all(1001, "test over", within=0.0)  # nobody answers the close: dropped


def _token(tenant: str = "tenant-a", ttl: int = 600, secret: str = SECRET) -> str:
    return issue_token(
        AuthSettings(jwt_secret=secret), tenant_id=tenant, sub="d1", role=Role.DISPATCHER, ttl_seconds=ttl
    )


def _connect(edge: Edge, query: str = "", **headers: str) -> Client:
    key = base64.b64encode(os.urandom(16)).decode()
    head = {
        "host": "edge.test",
        "upgrade": "websocket",
        "connection": "Upgrade",
        "sec-websocket-key": key,
        "sec-websocket-version": "13",
        **headers,
    }
    target = f"{PATH}?{query}" if query else PATH
    request = UpgradeRequest.parse("GET", target.encode(), [(k.encode(), v.encode()) for k, v in head.items()], "c:1")
    session = edge.sessions.take_over(request, PendingGate(cap=100), pending_seconds=5.0)
    assert session is not None
    transport = Transport()
    transport.session = session
    session.connection_made(cast(asyncio.Transport, transport))
    return Client(session, transport, key)


async def _until(check: Any, what: str, timeout: float = 2.0) -> None:
    """Until ``check()`` holds, looked at again whenever a transport was written to or ended (the session's tasks and
    timers run in this loop meanwhile)."""
    try:
        async with asyncio.timeout(timeout):
            while not check():
                Changes.event.clear()
                await Changes.event.wait()
    except TimeoutError:
        raise AssertionError(f"no {what} within {timeout} s") from None


async def _opened(edge: Edge, query: str | None = None) -> tuple[Client, list[dict[str, Any]]]:
    client = _connect(edge, query if query is not None else f"token={_token()}")
    return client, await client.messages_until(2, "connected and initial_state")


async def test_the_upgrade_is_answered_101_with_the_accept_key_then_connected_and_initial_state(edge: Edge) -> None:
    client, received = await _opened(edge)
    status, *lines = client.head().strip().split("\r\n")
    headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines)}
    assert status.startswith("HTTP/1.1 101 ")
    accept = base64.b64encode(hashlib.sha1((client.key + GUID).encode()).digest()).decode()
    assert headers["sec-websocket-accept"] == accept
    assert [m["type"] for m in received] == ["connected", "initial_state"]
    assert received[0]["tenant_id"] == "tenant-a" and received[1]["data"] == []


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"sec-websocket-version": "8"}, "426"),
        ({"sec-websocket-key": "short"}, "400"),
        ({"origin": "https://evil.example"}, "403"),
    ],
    ids=["old version", "bad key", "foreign origin"],
)
async def test_a_bad_upgrade_gets_its_http_error_and_the_connection_ends(
    edge: Edge, headers: dict[str, str], status: str
) -> None:
    client = _connect(edge, f"token={_token()}", **headers)
    await _until(lambda: client.transport.closed, "the connection ended")
    assert client.head().split(" ")[1] == status
    assert not edge.sessions.fanout.connection_count()


async def test_a_token_as_the_first_message_opens_the_session_and_none_in_time_closes_4001(edge: Edge) -> None:
    client = _connect(edge)
    await _until(lambda: client.transport.written.endswith(b"\r\n\r\n"), "the 101")
    client.head()
    client.send_text(json.dumps({"type": "auth", "token": _token()}))
    received = await client.messages_until(2, "the session opened")
    assert [m["type"] for m in received] == ["connected", "initial_state"]

    silent = _connect(edge)
    await _until(lambda: silent.transport.written.endswith(b"\r\n\r\n"), "the 101")
    silent.head()
    await _until(lambda: any(op == Opcode.CLOSE for op, _ in silent.frames()[-1:]), "the close for no token", 2.0)


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (_token(secret="another-secret-entirely-" * 3), "signature"),
        (_token(ttl=-60), "expired"),
        ("not.a.token", "token"),
    ],
    ids=["forged", "expired", "garbage"],
)
async def test_a_refused_token_closes_with_1008_and_a_reason(edge: Edge, token: str, reason: str) -> None:
    client = _connect(edge, f"token={token}")
    frames = await client.frames_until(lambda got: any(op == Opcode.CLOSE for op, _ in got), "the close")
    code, text = struct.unpack_from("!H", frames[-1][1])[0], frames[-1][1][2:].decode()
    assert code == 1008 and reason in text.lower(), text
    assert not [m for op, m in frames if op == Opcode.TEXT]  # nothing of the tenant's before the close


async def test_pings_get_pongs_and_the_text_ping_its_pong(edge: Edge) -> None:
    client, _ = await _opened(edge)
    client.send(Opcode.PING, b"are you there")
    client.send_text("ping")
    client.send_text('{"type": "ping"}')  # the origin's clients' spelling
    frames = client.frames()
    assert (Opcode.PONG, b"are you there") in frames
    frames += await client.frames_until(lambda got: len(got) >= 2, "two pongs")
    assert [json.loads(p) for op, p in frames if op == Opcode.TEXT] == [{"type": "pong"}, {"type": "pong"}]


async def test_a_peer_that_answers_the_servers_pings_stays_and_one_that_does_not_is_dropped(edge: Edge) -> None:
    answering, _ = await _opened(edge)
    silent, _ = await _opened(edge)
    pings = 0
    while pings < 3:  # each ping is answered; three rounds of interval + timeout
        for op, payload in await answering.frames_until(bool, "a frame"):
            if op == Opcode.PING:
                pings += 1
                answering.send(Opcode.PONG, payload)
    assert not answering.transport.closed
    await _until(lambda: silent.transport.aborted, "the silent peer dropped")
    assert (Opcode.PING, b"") in silent.frames()  # it was pinged before it was dropped


async def test_a_clients_close_is_echoed_then_the_connection_ends_and_is_forgotten(edge: Edge) -> None:
    client, _ = await _opened(edge)
    assert edge.sessions.fanout.connection_count() == 1
    client.send(Opcode.CLOSE, struct.pack("!H", 4100) + b"bye")
    assert client.frames() == [(Opcode.CLOSE, struct.pack("!H", 4100))]
    await _until(lambda: not edge.sessions.connections, "the session forgotten")
    assert client.transport.closed and not client.transport.aborted
    assert edge.sessions.fanout.connection_count() == 0


async def test_a_binary_frame_is_closed_with_1003_and_the_clients_close_answer_ends_it(edge: Edge) -> None:
    client, _ = await _opened(edge)
    client.send(Opcode.BINARY, b"\x00\x01")
    ((op, payload),) = client.frames()
    assert op == Opcode.CLOSE and struct.unpack_from("!H", payload)[0] == 1003
    client.send(Opcode.CLOSE, payload[:2])  # the client answers: nothing more is written, the connection ends
    assert client.frames() == []
    await _until(lambda: client.transport.closed, "the connection ended")


async def test_a_full_transport_holds_updates_in_order_until_it_drains(edge: Edge) -> None:
    client, _ = await _opened(edge)
    client.transport.room = 1  # the next write fills it: the client does not read

    def publish(offset: int, technician: str) -> None:  # as the live feed does
        event = location("tenant-a", technician, datetime.now(UTC), 6.5 + offset / 100, 3.4)
        changed = edge.view.apply(event, Position(tenant_partition("tenant-a", PARTITIONS), offset))
        assert changed is not None
        edge.fanout.publish("tenant-a", messages.update(changed, offset, f"c{offset}"), 0)
        edge.fanout.wake()

    for offset, technician in enumerate(["t1", "t2", "t3"]):
        publish(offset, technician)
    assert [m["data"]["technician_id"] for m in client.messages()] == ["t1"]  # then the transport was full
    client.transport.drain()
    assert [m["data"]["technician_id"] for m in client.messages()] == ["t2", "t3"]
