"""A tenant of thousands of technicians: its initial_state is megabytes. Clients that never read it are still closed
for what they send and when their token expires, a crowd of dispatchers does not cost a copy of it each, and a client
that negotiated permessage-deflate gets it compressed."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import time
import zlib

import httpx
import pytest
import websockets

from locstream.kafka import ensure_topic
from schemas.claims import Role
from schemas.events import Event
from tests.support.kafka_io import produce
from tests.support.maps import WS_PATH, fix
from tests.support.stack import Service, Stack, eventually

pytestmark = pytest.mark.integration

TENANT = "big-fleet"


async def _big_tenant(stack: Stack, technicians: int, id_length: int = 16) -> None:
    """``technicians`` of the tenant on the topic (one fix each), before the edge starts and bootstraps."""
    await ensure_topic(stack.kafka)
    events: list[Event] = [
        fix(TENANT, f"technician-{i:0>{id_length - 11}}", i % 600, latitude=(i % 9000) / 100)
        for i in range(technicians)
    ]
    await produce(stack.kafka, events)


def _client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (RFC 6455 5.2), payload under 64 KiB."""
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    size = len(payload)
    header = bytes((0x80 | opcode, 0x80 | size)) if size < 126 else struct.pack("!BBH", 0x80 | opcode, 0xFE, size)
    return header + mask + masked


def _never_reading_client(edge: Service, token: str) -> socket.socket:
    """A WebSocket client with a tiny receive window that reads the upgrade's answer and then not a byte more."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", edge.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {WS_PATH}?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{edge.port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:  # a client sends frames only once the upgrade is answered
        answer += sock.recv(1)
    assert answer.startswith(b"HTTP/1.1 101"), answer
    return sock


def _ended(sock: socket.socket, within: float) -> bool:
    """Read (and drop) whatever comes until the server ends the connection; False if it is still open then."""
    sock.settimeout(0.5)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if not sock.recv(1 << 20):
                return True
        except TimeoutError:
            continue
        except ConnectionError:
            return True
    return False


async def _stats(edge: Service) -> dict[str, int]:
    async with httpx.AsyncClient() as http:
        stats: dict[str, int] = (
            await http.get(f"{edge.url}/api/v1/field-service/ws/stats", headers=edge.admin_headers)
        ).json()
        return stats


async def test_a_policy_close_ends_a_connection_that_never_read_its_first_frames(stack: Stack) -> None:
    stack.env["LOCSTREAM_EDGE_SLOW_CONSUMER_SECONDS"] = "2"
    stack.env["LOCSTREAM_EDGE_TOKEN_EXPIRY_LEEWAY_SECONDS"] = "0"
    # An initial_state of ~8 MB: more than the kernel buffers between the edge and a client that does not read
    # (up to 4 MB on the sending side here), so its write never ends.
    await _big_tenant(stack, 25_000, id_length=100)
    edge = await stack.start("ws-edge")
    refreshes = {
        "another tenant's": stack.token("another-tenant"),
        "an expired": stack.token(TENANT, ttl=-60),
        "a technician's": stack.token(TENANT, Role.TECHNICIAN),
    }
    clients: list[socket.socket] = []
    for i in range(20):
        sock = _never_reading_client(edge, stack.token(TENANT))
        if i < 5:
            sock.sendall(_client_frame(0x2, b"\x00binary"))
        elif i < 15:
            refresh = list(refreshes.values())[i % 3]
            sock.sendall(_client_frame(0x1, json.dumps({"type": "auth", "token": refresh}).encode()))
        clients.append(sock)
    for _ in range(5):  # and five that send nothing, with a token that expires in 2 s
        clients.append(_never_reading_client(edge, stack.token(TENANT, ttl=2)))

    async def none_active() -> bool:
        return (await _stats(edge))["active_connections"] == 0

    # each is closed: at once for what it sent, at its token's expiry, or as a slow consumer (2 s), and its close
    # frame gets the write deadline (2 s) before the connection is dropped
    await eventually(none_active, timeout=15, what="every never-reading client to be closed")
    ended = await asyncio.gather(*(asyncio.to_thread(_ended, sock, 10.0) for sock in clients))
    for sock in clients:
        sock.close()
    assert all(ended), f"{ended.count(False)} connections still open"


async def test_a_crowd_of_dispatchers_costs_one_encoding_of_a_big_tenants_map_not_one_each(stack: Stack) -> None:
    await _big_tenant(stack, 20_000)
    edge = await stack.start("ws-edge")

    async def dispatcher() -> websockets.ClientConnection:
        ws = await websockets.connect(f"{edge.ws_url}{WS_PATH}?token={stack.token(TENANT)}", max_size=None)
        assert json.loads(await ws.recv())["type"] == "connected"
        initial = await asyncio.wait_for(ws.recv(), 60)
        assert isinstance(initial, str) and initial.startswith('{"type":"initial_state"')
        assert len(initial) > 3_000_000  # the map of 20,000 technicians
        return ws

    warm = await dispatcher()  # the shared encoding exists once, whatever comes after
    baseline = edge.rss_bytes()
    crowd: list[websockets.ClientConnection] = []
    for _ in range(4):  # 200 dispatchers, 50 at a time: each read its whole initial_state
        crowd.extend(await asyncio.gather(*(dispatcher() for _ in range(50))))
    assert (await _stats(edge))["active_connections"] == 201
    grown = edge.rss_bytes() - baseline
    # Before: +1,287 MB for 200 (a copy of the 3.8 MB map kept per connection). Allowed: 40 KB per connection,
    # plus what the burst left in the allocator, well under two copies of the map per ten dispatchers.
    assert grown < 80 * 2**20, f"{grown / 2**20:.0f} MB more for 200 dispatchers"
    for ws in [warm, *crowd]:
        await ws.close()


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One server frame (unmasked): its first byte and payload."""
    first, second = await reader.readexactly(2)
    size = second & 0x7F
    if size == 126:
        size = struct.unpack("!H", await reader.readexactly(2))[0]
    elif size == 127:
        size = struct.unpack("!Q", await reader.readexactly(8))[0]
    return first, await reader.readexactly(size)


async def test_a_client_that_negotiated_deflate_gets_the_big_map_compressed_under_a_megabyte(stack: Stack) -> None:
    await _big_tenant(stack, 20_000)
    edge = await stack.start("ws-edge")
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.port, limit=2**24)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {WS_PATH}?token={stack.token(TENANT)} HTTP/1.1\r\nHost: 127.0.0.1:{edge.port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Protocol: locstream.v2\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n".encode()
    )
    head = (await reader.readuntil(b"\r\n\r\n")).decode().lower()
    assert head.startswith("http/1.1 101") and "sec-websocket-protocol: locstream.v2" in head
    assert "permessage-deflate; server_no_context_takeover; client_no_context_takeover" in head
    first, connected = await _read_frame(reader)
    assert first == 0x81 and json.loads(connected)["type"] == "connected"  # small frames go out as they are
    first, compressed = await asyncio.wait_for(_read_frame(reader), 60)
    assert first == 0xC1  # FIN, RSV1 (compressed), text
    message = json.loads(zlib.decompressobj(-15).decompress(compressed + b"\x00\x00\xff\xff"))
    assert message["type"] == "initial_state" and len(message["data"]) == 20_000
    plain = len(json.dumps(message, separators=(",", ":")))
    assert len(compressed) < 1_000_000 and len(compressed) * 3 < plain, (len(compressed), plain)
    writer.close()
