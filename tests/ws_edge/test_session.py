"""A client session through a real edge process and real sockets: the shutdown, no task per session, the RFC's
frames and bad upgrades as a client library sends them, compression, floods and crowds. The session's own cases
(upgrade, token, pings, close, backpressure) are driven byte by byte in test_client_session.py."""

from __future__ import annotations

import asyncio
import signal
import zlib
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from tests.support.stack import Stack, eventually
from ws_edge.framing import MAX_FRAGMENTS

pytestmark = pytest.mark.integration

WS_PATH = "/api/v1/field-service/ws/technician-locations"


async def test_sigterm_closes_every_socket_with_1012_and_the_edge_exits_within_10_s(stack: Stack) -> None:
    edge = await stack.start("ws-edge")
    clients = [await websockets.connect(f"{edge.ws_url}{WS_PATH}?token={stack.token('tenant-a')}") for _ in range(3)]
    for ws in clients:
        assert '"connected"' in str(await ws.recv()) and '"initial_state"' in str(await ws.recv())
    edge.process.send_signal(signal.SIGTERM)
    for ws in clients:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
    # uvicorn re-raises the signal once it has shut down: -15 is the exit of a clean shutdown on SIGTERM
    assert await asyncio.to_thread(edge.process.wait, 10) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in edge.log()


async def test_open_sessions_hold_no_task_and_one_that_goes_away_leaves_nothing(stack: Stack) -> None:
    edge = await stack.start("ws-edge")

    async def stats() -> dict[str, int]:
        async with httpx.AsyncClient(base_url=edge.url, headers=edge.admin_headers) as http:
            return dict((await http.get("/api/v1/field-service/ws/stats")).json())

    before = await stats()
    clients = [await websockets.connect(f"{edge.ws_url}{WS_PATH}?token={stack.token('tenant-a')}") for _ in range(60)]
    for ws in clients:
        assert '"connected"' in str(await ws.recv()) and '"initial_state"' in str(await ws.recv())
    during = await stats()
    assert during["active_connections"] == 60
    assert during["tasks"] <= before["tasks"] + 2, (before, during)  # 60 connections, no task of their own
    for ws in clients[:30]:
        ws.transport.abort()  # vanish without a close
    await clients[30].close(code=4100, reason="bye")  # a close of its own: answered, then ended
    assert clients[30].close_code == 4100
    assert await eventually(lambda: _active(stats, 29), timeout=10, what="the vanished clients to be forgotten")


async def _active(stats: Any, count: int) -> bool:
    figures = await stats()
    return bool(figures["active_connections"] == count)


async def test_frames_against_the_rfc_and_bad_upgrades_get_their_codes_and_reasons(stack: Stack) -> None:
    edge = await stack.start("ws-edge")
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.port)
    writer.write(f"GET {WS_PATH} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".encode())
    answer = await asyncio.wait_for(reader.read(), 10)  # no version, no key: refused, and the connection ends
    assert answer.startswith(b"HTTP/1.1 426 ") and answer.endswith(b"only WebSocket version 13 is supported")
    writer.close()
    ws = await websockets.connect(f"{edge.ws_url}{WS_PATH}?token={stack.token('tenant-a')}")
    assert '"connected"' in str(await ws.recv()) and '"initial_state"' in str(await ws.recv())
    ws.transport.write(bytes((0x81, 0x02)) + b"hi")  # an unmasked client frame
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1002
    assert "masked" in closed.value.rcvd.reason
    ws = await websockets.connect(f"{edge.ws_url}{WS_PATH}?token={stack.token('tenant-a')}")
    assert '"connected"' in str(await ws.recv()) and '"initial_state"' in str(await ws.recv())
    ws.transport.write(bytes((0x81, 0x80 | 127)) + (1 << 40).to_bytes(8, "big") + b"\x00" * 4)  # a terabyte, said
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    ws = await websockets.connect(f"{edge.ws_url}{WS_PATH}?token={stack.token('tenant-a')}")
    assert '"connected"' in str(await ws.recv()) and '"initial_state"' in str(await ws.recv())
    for _ in range(200):  # a ping flood: each would queue a pong for a client that need not read them
        ws.transport.write(bytes((0x89, 0x80)) + b"\x00" * 4)
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert "Traceback" not in edge.log()


async def _raw_upgrade(
    port: int, token: str, extensions: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**22)
    writer.write(
        f"GET {WS_PATH}?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"{extensions}\r\n".encode()
    )
    head = (await reader.readuntil(b"\r\n\r\n")).decode().lower()
    return reader, writer, head


async def _server_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The next frame the server sent: its opcode and payload."""
    first, second = await asyncio.wait_for(reader.readexactly(2), 10)
    size = second & 0x7F
    if size == 126:
        size = int.from_bytes(await reader.readexactly(2), "big")
    elif size == 127:
        size = int.from_bytes(await reader.readexactly(8), "big")
    return first & 0x0F, await reader.readexactly(size)


async def _close_code(reader: asyncio.StreamReader) -> int:
    """Read server frames until its close frame; its code."""
    while True:
        opcode, payload = await _server_frame(reader)
        if opcode == 0x8:
            return int.from_bytes(payload[:2], "big")


async def test_compressed_messages_are_bounded_once_inflated_and_refused_without_the_extension(stack: Stack) -> None:
    edge = await stack.start("ws-edge")
    token = stack.token("tenant-a")
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = bomb.compress(b" " * 1_000_000) + bomb.flush(zlib.Z_SYNC_FLUSH)
    body = body[:-4]  # a megabyte of spaces in about a kilobyte: over 64 KiB once inflated
    frame = bytes((0xC1, 0x80 | 126)) + len(body).to_bytes(2, "big") + b"\x00" * 4 + body
    reader, writer, head = await _raw_upgrade(edge.port, token, "Sec-WebSocket-Extensions: permessage-deflate\r\n")
    assert "permessage-deflate" in head
    writer.write(frame)
    assert await _close_code(reader) == 1009
    writer.close()
    reader, writer, head = await _raw_upgrade(edge.port, token, "")  # no extension negotiated: RSV1 is a violation
    assert head.startswith("http/1.1 101") and "permessage-deflate" not in head
    writer.write(frame)
    assert await _close_code(reader) == 1002
    writer.close()
    offer = "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8\r\n"  # the server cannot: declined
    reader, writer, head = await _raw_upgrade(edge.port, token, offer)
    assert head.startswith("http/1.1 101") and "permessage-deflate" not in head
    writer.write(bytes((0x88, 0x82)) + b"\x00" * 4 + (1005).to_bytes(2, "big"))  # a code no peer may send
    assert await _close_code(reader) == 1002
    writer.close()


EMPTY_CONTINUATION = b"\x00\x80\x00\x00\x00\x00"  # FIN=0, continuation, masked, empty: 6 bytes


def _masked(opcode: Opcode, data: bytes, fin: bool = True, rsv1: bool = False) -> bytes:
    return Frame(opcode, data, fin=fin, rsv1=rsv1).serialize(mask=True, extensions=[])


async def _flood(writer: asyncio.StreamWriter, piece: bytes, total: int) -> int:
    """Send ``piece`` until ``total`` bytes went or the edge ends the connection; how many bytes went."""
    sent = 0
    try:
        while sent < total:
            writer.write(piece)
            await writer.drain()
            sent += len(piece)
    except (ConnectionResetError, BrokenPipeError):
        pass
    return sent


async def _ended(reader: asyncio.StreamReader) -> list[int]:
    """Every close code the edge sent until it ended the connection (EOF or reset)."""
    codes: list[int] = []
    try:
        while True:
            opcode, payload = await _server_frame(reader)
            if opcode == 0x8:
                codes.append(int.from_bytes(payload[:2], "big"))
    except (asyncio.IncompleteReadError, ConnectionResetError):
        return codes


@pytest.mark.parametrize("variant", ["plain", "pings between", "under deflate", "after the 4001 close"])
async def test_a_flood_of_empty_continuation_frames_is_cut_off_with_or_without_a_token(
    stack: Stack, variant: str
) -> None:
    """The attack grew the edge by 22 MiB/s and starved its loop, without a token, and went on after its 4001."""
    edge = await stack.start("ws-edge", env={"LOCSTREAM_EDGE_AUTH_TIMEOUT_SECONDS": "1"})
    rss = edge.rss_bytes()
    extensions = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if variant == "under deflate" else ""
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.port)
    writer.write(  # no token: it would come as the first message
        f"GET {WS_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{edge.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extensions}\r\n".encode()
    )
    head = (await reader.readuntil(b"\r\n\r\n")).decode().lower()
    assert head.startswith("http/1.1 101") and ("permessage-deflate" in head) == (variant == "under deflate")
    if variant == "after the 4001 close":
        assert await _close_code(reader) == 4001  # no token within a second
    else:  # one message's first frame, then empty continuations (and pings): refused long before the token is due
        first = bytes((0x41 if variant == "under deflate" else 0x01, 0x81)) + b"\x00" * 4 + b"{"  # FIN=0, masked
        between = _masked(Opcode.PING, b"") if variant == "pings between" else b""
        writer.write(first + (EMPTY_CONTINUATION + between) * MAX_FRAGMENTS)
        assert await _close_code(reader) in (1008, 1009)  # too many frames, or too fast
    # Its close decided, the edge reads no more than what may have been in flight: the flood is cut off.
    sent = await asyncio.wait_for(_flood(writer, EMPTY_CONTINUATION * 10_000, 200 * 2**20), 60)
    await _ended(reader)
    writer.close()
    assert sent < 20 * 2**20, f"{sent:,} bytes of empty frames went in before the edge let go"
    assert edge.rss_bytes() < rss + 16 * 2**20
    assert "Traceback" not in edge.log()


async def test_an_auth_message_sent_before_the_101_is_read_not_lost(stack: Stack) -> None:
    """200 clients at once, each with its auth message in the same write as its upgrade request and a ping right
    after: the edge answers a few upgrades per turn of its loop (``ws_edge/turn_budget.py``), and what a waiting
    connection sent meanwhile is read once its turn comes, in order."""
    edge = await stack.start("ws-edge")
    token = stack.token("tenant-a")

    async def one() -> list[bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", edge.port)
        writer.write(  # the request and the auth message in one write, before any answer
            f"GET {WS_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{edge.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode()
            + _masked(Opcode.TEXT, f'{{"type": "auth", "token": "{token}"}}'.encode())
        )
        await writer.drain()
        writer.write(_masked(Opcode.TEXT, b'{"type": "ping"}'))
        try:
            head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)).decode().lower()
            assert head.startswith("http/1.1 101")
            return [await asyncio.wait_for(_text_frame(reader), 30) for _ in range(3)]
        finally:
            writer.close()

    for frames in await asyncio.gather(*(one() for _ in range(200))):
        # opened at once, not 4001 after the auth timeout; then the ping, read after the auth message
        assert b'"connected"' in frames[0] and b'"initial_state"' in frames[1] and frames[2] == b'{"type":"pong"}'


async def _text_frame(reader: asyncio.StreamReader) -> bytes:
    first, second = await reader.readexactly(2)
    assert first == 0x81 and not second & 0x80, (first, second)  # a whole text frame, unmasked
    size = second & 0x7F
    if size == 126:
        size = int.from_bytes(await reader.readexactly(2))
    elif size == 127:
        size = int.from_bytes(await reader.readexactly(8))
    return await reader.readexactly(size)


async def test_a_crowd_closing_at_once_gets_each_its_own_code_back_and_is_forgotten(stack: Stack) -> None:
    """200 clients send their close frames at the same moment: the edge answers them a few per turn of its loop
    (``ws_edge/turn_budget.py``), each with the code it sent, and forgets every one. A client whose message is cut
    where its next piece starts with a close frame's first byte is read on, in order, not taken for a closing one."""
    edge = await stack.start("ws-edge")
    token = stack.token("tenant-a")

    async def stats() -> dict[str, int]:
        async with httpx.AsyncClient(base_url=edge.url, headers=edge.admin_headers) as http:
            return dict((await http.get("/api/v1/field-service/ws/stats")).json())

    async def opened() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer, head = await _raw_upgrade(edge.port, token, "")
        assert head.startswith("http/1.1 101")
        assert b'"connected"' in await _text_frame(reader) and b'"initial_state"' in await _text_frame(reader)
        return reader, writer

    crowd = await asyncio.gather(*(opened() for _ in range(200)))
    go = asyncio.Event()

    async def close(i: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
        await go.wait()
        writer.write(_masked(Opcode.CLOSE, (4000 + i).to_bytes(2, "big")))
        try:
            return await _close_code(reader)
        finally:
            writer.close()

    closing = [asyncio.create_task(close(i, *pair)) for i, pair in enumerate(crowd)]
    go.set()
    assert await asyncio.gather(*closing) == [4000 + i for i in range(200)]
    assert await eventually(lambda: _active(stats, 0), timeout=10, what="the closed clients to be forgotten")

    reader, writer = await opened()
    mask = bytes((ord("p") ^ 0x88, 0, 0, 0))  # "ping" masked so that its payload starts with 0x88
    pong = b'{"type":"pong"}'
    writer.write(_masked(Opcode.TEXT, b"ping") + bytes((0x81, 0x84)) + mask)  # a ping, and the next one's head
    assert await asyncio.wait_for(_text_frame(reader), 10) == pong  # so the edge read up to that head
    writer.write(bytes(a ^ b for a, b in zip(b"ping", mask, strict=True)))  # the edge's next read starts with 0x88
    assert await asyncio.wait_for(_text_frame(reader), 10) == pong
    writer.write(_masked(Opcode.TEXT, b"ping"))  # and it reads on
    assert await asyncio.wait_for(_text_frame(reader), 10) == pong
    writer.close()
