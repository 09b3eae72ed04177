"""A cheap WebSocket load client: thousands of raw-socket connections in one process.

It does the real RFC 6455 handshake, reads in large chunks, counts frames without parsing them, answers
server pings, and parses timestamps only on a sample of connections. It runs as its own process, driven by
the harness through stdin/stdout (one JSON object per line):

- it prints ``{"event": "ready", ...}`` once every connection has its initial_state (or failed);
- ``report`` on stdin prints cumulative counters and the latency percentiles of the samples since the last report;
  ``count`` prints the same counters and keeps the samples for the next ``report`` (a harness waiting for the
  last frames polls with it, so the samples of the whole load reach one report);
- ``stop`` (or end of input) closes everything and exits.

``python -m bench.wsclient --url ws://127.0.0.1:8003/api/v1/field-service/ws/technician-locations --token T
--connections 1000``
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import struct
import sys
import time
from collections import Counter
from datetime import datetime
from typing import Any, cast
from urllib.parse import urlsplit

import orjson

from bench.stats import percentiles

_UPDATE_MARK = b"location_update"
_BATCH_MARK = b"location_batch"
_INITIAL_MARK = b"initial_state"


class Stats:
    def __init__(self) -> None:
        self.updates = 0  # location updates received by the connections that keep reading
        self.closes: Counter[int] = Counter()
        self.latencies: list[float] = []
        self.ready = 0
        self.failed = 0


class WsClient(asyncio.Protocol):
    def __init__(self, stats: Stats, request: bytes, sampled: bool, slow: bool, on_ready: asyncio.Future[None]):
        self.stats = stats
        self.request = request
        self.sampled = sampled
        self.slow = slow
        self.on_ready = on_ready
        self.buffer = bytearray()
        self.upgraded = False
        self.initialized = False
        self.updates = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.on_ready.done():
            self.on_ready.set_exception(ConnectionError(f"closed before initial_state: {exc}"))

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                status_line = bytes(buffer[: buffer.find(b"\r\n")])
                self._fail(f"handshake refused: {status_line!r}")
                return
            del buffer[: end + 4]
            self.upgraded = True
        offset = 0
        size = len(buffer)
        while size - offset >= 2:
            first, second = buffer[offset], buffer[offset + 1] & 0x7F
            head = 2
            if second == 126:
                if size - offset < 4:
                    break
                (second,) = struct.unpack_from("!H", buffer, offset + 2)
                head = 4
            elif second == 127:
                if size - offset < 10:
                    break
                (second,) = struct.unpack_from("!Q", buffer, offset + 2)
                head = 10
            if size - offset < head + second:
                break
            start = offset + head
            self._frame(first & 0x0F, buffer, start, start + second)
            offset = start + second
        if offset:
            del buffer[:offset]

    def _frame(self, opcode: int, buffer: bytearray, start: int, end: int) -> None:
        if opcode == 1:
            head = bytes(buffer[start : min(end, start + 40)])
            if _UPDATE_MARK in head:
                self.updates += 1
                if not self.slow:
                    self.stats.updates += 1
                    if self.sampled:
                        self._sample(bytes(buffer[start:end]))
            elif _BATCH_MARK in head:
                payload = bytes(buffer[start:end])
                count = payload.count(b'"technician_id"')  # one per update, without parsing the frame
                self.updates += count
                if not self.slow:
                    self.stats.updates += count
                    if self.sampled:
                        now = time.time()
                        for item in orjson.loads(payload)["data"]:
                            self.stats.latencies.append(now - _epoch(item["last_update"]))
            elif _INITIAL_MARK in head and not self.initialized:
                self.initialized = True
                if self.slow and self.transport is not None:
                    self.transport.pause_reading()  # a dispatcher whose tab froze: it stops reading
                if not self.on_ready.done():
                    self.on_ready.set_result(None)
        elif opcode == 9:  # ping -> pong with the same payload
            self._send(0xA, bytes(buffer[start:end]))
        elif opcode == 8:
            code = struct.unpack_from("!H", buffer, start)[0] if end - start >= 2 else 1005
            self.stats.closes[code] += 1
            self._send(0x8, bytes(buffer[start : start + 2]))
            if self.transport is not None:
                self.transport.close()

    def _sample(self, payload: bytes) -> None:
        message = orjson.loads(payload)
        self.stats.latencies.append(time.time() - _epoch(message["data"]["last_update"]))

    def _send(self, opcode: int, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.transport.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def _fail(self, reason: str) -> None:
        if not self.on_ready.done():
            self.on_ready.set_exception(ConnectionError(reason))
        if self.transport is not None:
            self.transport.close()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._send(0x8, struct.pack("!H", 1000))
            self.transport.close()


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _handshake(url: str, token: str) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    key = base64.b64encode(os.urandom(16)).decode()
    path = f"{parts.path}?token={token}" + (f"&{parts.query}" if parts.query else "")
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    return parts.hostname or "127.0.0.1", parts.port or 80, request.encode()


async def run(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stats = Stats()
    host, port, request = _handshake(args.url, args.token)
    sources = args.sources.split(",")
    clients: list[WsClient] = []
    gate = asyncio.Semaphore(args.concurrency)
    began = time.monotonic()

    async def open_one(i: int) -> None:
        ready: asyncio.Future[None] = loop.create_future()
        client = WsClient(stats, request, sampled=i % args.sample_every == 0, slow=i < args.slow, on_ready=ready)
        async with gate:
            try:
                await loop.create_connection(lambda: client, host, port, local_addr=(sources[i % len(sources)], 0))
                await asyncio.wait_for(ready, args.connect_timeout)
            except (OSError, TimeoutError) as exc:
                stats.failed += 1
                if stats.failed <= 3:
                    print(json.dumps({"event": "connect_error", "error": str(exc)}), file=sys.stderr, flush=True)
                return
        stats.ready += 1
        clients.append(client)

    await asyncio.gather(*(open_one(i) for i in range(args.connections)))
    _emit(
        {
            "event": "ready",
            "connected": stats.ready,
            "failed": stats.failed,
            "seconds": round(time.monotonic() - began, 4),
        }
    )
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().strip()
        if line in ("report", "count"):
            latencies = stats.latencies
            if line == "report":
                stats.latencies = []
            _emit(
                {
                    "event": "report",
                    "updates": stats.updates,
                    "closes": dict(stats.closes),
                    "open": sum(1 for c in clients if c.transport and not c.transport.is_closing()),
                    "per_connection_min": min((c.updates for c in clients if not c.slow), default=0),
                    "per_connection_max": max((c.updates for c in clients if not c.slow), default=0),
                    "latency": percentiles(latencies) if line == "report" else {"count": len(latencies)},
                }
            )
        elif line in ("stop", ""):
            break
    for client in clients:
        client.close()
    await asyncio.sleep(0.1)  # let the close frames go out


def _emit(message: dict[str, Any]) -> None:
    print(json.dumps(message), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--sample-every", type=int, default=20, help="parse timestamps on every Nth connection")
    parser.add_argument("--slow", type=int, default=0, help="this many connections stop reading after initial_state")
    parser.add_argument("--sources", default="127.0.0.1", help="comma-separated source addresses (127.0.0.x)")
    parser.add_argument("--concurrency", type=int, default=1000, help="handshakes in flight at once")
    parser.add_argument("--connect-timeout", type=float, default=60.0)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(run(args))
    except ImportError:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
