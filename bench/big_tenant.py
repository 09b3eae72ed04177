"""The ``big-tenant`` scenario: initial states of tenants of tens of thousands of technicians on one edge process.

A topic gets one tenant of ``big`` technicians and one of ``crowd_tenant`` technicians (one fix each, coordinates as
random as a real fleet's, so compression is not flattered), and one technician of a small tenant. Then a
``locstream ws-edge`` process bootstraps from it, and:

- **event loop hold**: a probe client of the small tenant sends a WebSocket ping every 2 ms and times each pong
  while a dispatcher of the big tenant connects and reads its whole ``initial_state`` (v1, then v2 with
  permessage-deflate). The longest pong wait bounds the longest time the loop was held;
- **sizes**: the ``initial_state`` as it crosses the wire, plain and compressed;
- **a crowd**: ``dispatchers`` dispatchers of the other tenant connect at once and each reads its ``initial_state``;
  the edge's RSS once they have, against before (one dispatcher had connected already), and against the size of
  one encoding of that map. Once with plain clients, once with clients that negotiated permessage-deflate.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import struct
import sys
import time
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from bench.procstats import rss_bytes
from bench.scenario import BenchContext, Metrics, scenario
from bench.stats import percentiles
from bench.systems import JWT_SECRET, RunningSystem, free_port, service
from locstream.auth import issue_token
from locstream.kafka import append_records, ensure_topic, event_records
from locstream.settings import AuthSettings, KafkaSettings
from schemas.claims import Role
from schemas.contracts import FEED_PATH
from schemas.events import Event, LocationData, LocationRecorded, TechnicianData, TechnicianUpdated

T0 = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
_STATUSES = ["available", "on_job", "en_route", "on_break"]
_NAMES = ["Ada", "Bola", "Chidi", "Dana", "Emeka", "Femi", "Gus", "Hana", "Ife", "Jide", "Kemi", "Lara"]


def _fleet(tenant: str, technicians: int, rng: random.Random) -> list[Event]:
    """A name and status, then a fix, for each technician."""
    events: list[Event] = []
    for i in range(technicians):
        technician, at = f"tech-{i:06d}", T0 + timedelta(seconds=rng.uniform(0, 3600))
        name = f"{rng.choice(_NAMES)} {rng.choice(_NAMES)}{rng.randint(1, 99)}"
        status = rng.choice(_STATUSES)
        profile = TechnicianData(name=name, status=status)
        position = LocationData(latitude=6.3 + rng.random() * 0.5, longitude=3.1 + rng.random() * 0.6)
        update = TechnicianUpdated(
            event_id=uuid.uuid4(),
            tenant_id=tenant,
            technician_id=technician,
            recorded_at=at,
            received_at=at,
            data=profile,
        )
        fix = LocationRecorded(
            event_id=uuid.uuid4(),
            tenant_id=tenant,
            technician_id=technician,
            recorded_at=at,
            received_at=at,
            data=position,
        )
        events += [update, fix]
    return events


class Client:
    """A raw WebSocket client: the handshake, then whole frames (control frames answered or returned)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, deflate: bool) -> None:
        self.reader, self.writer, self.deflate = reader, writer, deflate

    @classmethod
    async def connect(cls, port: int, token: str, v2: bool = False, deflate: bool = False) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**26)
        key = base64.b64encode(os.urandom(16)).decode()
        extra = "Sec-WebSocket-Protocol: locstream.v2\r\n" if v2 else ""
        extra += "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" if deflate else ""
        writer.write(
            f"GET {FEED_PATH}?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n{extra}\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(head.decode(errors="replace"))
        return cls(reader, writer, deflate and b"permessage-deflate" in head)

    async def frame(self) -> tuple[int, bytes]:
        """The next frame's first byte and payload, as it came (compressed or not)."""
        first, second = await self.reader.readexactly(2)
        size = second & 0x7F
        if size == 126:
            size = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        return first, await self.reader.readexactly(size)

    async def initial_state(self) -> tuple[int, int]:
        """Read up to the initial_state: its bytes on the wire and its number of technicians."""
        while True:
            first, payload = await self.frame()
            if first & 0x0F != 1:
                continue
            text = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff") if first & 0x40 else payload
            if b'"initial_state"' in text[:40]:
                return len(payload), len(orjson.loads(text)["data"])

    def send_ping(self, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(bytes((0x89, 0x80 | len(payload))) + mask + masked)

    def close(self) -> None:
        self.writer.close()


async def _probe(client: Client, rtts: list[float], stop: asyncio.Event) -> None:
    """Ping every 2 ms; each pong's wait, in seconds."""
    while not stop.is_set():
        sent = time.perf_counter()
        client.send_ping(b"p")
        while True:
            first, _ = await client.frame()
            if first & 0x0F == 0xA:
                break
        rtts.append(time.perf_counter() - sent)
        await asyncio.sleep(0.002)


async def _probe_main(port: int, token: str) -> None:
    """The probe as a process of its own (``python -m bench.big_tenant PORT TOKEN``), so that the clients reading
    megabytes in the harness's process do not delay its pongs: pings until a line comes on stdin, then prints the
    pong waits' percentiles as one JSON line."""
    client = await Client.connect(port, token)
    await client.initial_state()
    rtts: list[float] = []
    stop = asyncio.Event()
    probing = asyncio.create_task(_probe(client, rtts, stop))
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    stop.set()
    await probing
    print(orjson.dumps(percentiles(rtts)).decode(), flush=True)


async def _while_probed(port: int, token: str, work: Any) -> tuple[Any, dict[str, Any]]:
    """``work``, while a probe process pings the edge: the longest pong wait bounds the longest loop hold."""
    probe = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.big_tenant",
        str(port),
        token,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert probe.stdin is not None and probe.stdout is not None
    await probe.stdout.readline()
    await asyncio.sleep(0.3)
    try:
        result = await work
    finally:
        probe.stdin.write(b"stop\n")
        await probe.stdin.drain()
    figures: dict[str, Any] = orjson.loads(await probe.stdout.readline())
    await probe.wait()
    return result, figures


@scenario(
    "big-tenant",
    {
        "small": [{"big": 3_000, "crowd_tenant": 2_000, "dispatchers": 10}],
        "full": [{"big": 50_000, "crowd_tenant": 20_000, "dispatchers": 200}],
    },
    headline="loop_hold_max_ms_v1",
    higher_is_better=False,
    what="a tenant of N technicians: the longest pong wait of another client while one dispatcher reads its"
    " initial_state (v1; v2 with permessage-deflate); its size on the wire; 200 dispatchers of a tenant of"
    " M at once: the edge's RSS growth against one encoding of that map",
    notes=[
        "targets (issue 20): the loop held <= 50 ms at a time for 50,000; RSS growth <= one shared encoding for"
        " 200 dispatchers of 20,000; v2 initial_state <= 1 MB for 20,000"
    ],
    systems=("locstream",),
    standalone=True,
)
async def measure(system: RunningSystem, p: dict[str, Any], ctx: BenchContext) -> Metrics:
    """Initial states of tenants of tens of thousands of technicians on one edge process."""
    bootstrap, workdir = ctx.bootstrap, ctx.workdir
    rng = random.Random(20)
    big, crowd_size = p["big"], p["crowd_tenant"]
    topic = f"bench.big-tenant.{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings(bootstrap_servers=bootstrap, topic=topic)
    await ensure_topic(kafka)
    fleets = [*_fleet("big", big, rng), *_fleet("crowd", crowd_size, rng), *_fleet("probe", 1, rng)]
    await append_records(kafka, event_records(kafka, fleets), in_flight=len(fleets), linger_ms=20)
    port = free_port()
    env = {
        **os.environ,
        "LOCSTREAM_JWT_SECRET": JWT_SECRET,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_TOPIC": topic,
        "LOCSTREAM_DATA_DIR": str(workdir / topic),
        "LOCSTREAM_EDGE_CLIENT_MESSAGE_RATE": "0",
    }
    auth = AuthSettings(jwt_secret=JWT_SECRET)

    def token(tenant: str) -> str:
        return issue_token(auth, tenant_id=tenant, sub="bench", role=Role.DISPATCHER, ttl_seconds=3600)

    ready = f"http://127.0.0.1:{port}/readyz"
    async with service(["ws-edge", "--port", str(port)], env, workdir / f"{topic}.log", ready) as process:
        _, idle = await _while_probed(port, token("probe"), asyncio.sleep(1.0))

        async def one(v2: bool, deflate: bool) -> tuple[int, int]:
            client = await Client.connect(port, token("big"), v2=v2, deflate=deflate)
            try:
                return await client.initial_state()
            finally:
                client.close()

        (v1_bytes, v1_count), v1_hold = await _while_probed(port, token("probe"), one(False, False))
        (v2_bytes, v2_count), v2_hold = await _while_probed(port, token("probe"), one(True, True))
        crowd = {"plain": await _crowd(port, token("crowd"), process.pid, p["dispatchers"], deflate=False)}
        crowd["deflate"] = await _crowd(port, token("crowd"), process.pid, p["dispatchers"], deflate=True)
        return {
            "loop_hold_max_ms_v1": v1_hold["max_ms"],
            "loop_hold_max_ms_v2_deflate": v2_hold["max_ms"],
            "pong_wait_idle": idle,
            "pong_wait_during_v1": v1_hold,
            "pong_wait_during_v2_deflate": v2_hold,
            "big_technicians": v1_count,
            "big_initial_state_bytes_v1": v1_bytes,
            "big_initial_state_bytes_v2_deflate": v2_bytes,
            "big_v2_technicians": v2_count,
            "crowd_technicians": crowd_size,
            "crowd": crowd,
            "crowd_rss_growth_vs_one_encoding_plain": crowd["plain"]["rss_growth_vs_one_encoding"],
            "crowd_rss_growth_vs_one_plain_encoding_deflate": round(
                crowd["deflate"]["rss_growth_bytes"] / crowd["plain"]["initial_state_bytes"], 2
            ),
            "crowd_initial_state_bytes_plain": crowd["plain"]["initial_state_bytes"],
            "crowd_initial_state_bytes_deflate": crowd["deflate"]["initial_state_bytes"],
        }


async def _crowd(port: int, token: str, pid: int, dispatchers: int, deflate: bool) -> dict[str, Any]:
    """One dispatcher, then ``dispatchers`` at once, each reading its initial_state; the edge's RSS growth."""
    warm = await Client.connect(port, token, v2=deflate, deflate=deflate)
    size, _ = await warm.initial_state()
    await asyncio.sleep(1.5)  # the shared encoding of the warm one is forgotten after a second: a fresh one follows
    before = rss_bytes(pid)
    began = time.monotonic()
    clients = await asyncio.gather(
        *(Client.connect(port, token, v2=deflate, deflate=deflate) for _ in range(dispatchers))
    )
    sizes = await asyncio.gather(*(client.initial_state() for client in clients))
    seconds = time.monotonic() - began
    await asyncio.sleep(0.5)
    grown = rss_bytes(pid) - before
    for client in [warm, *clients]:
        client.close()
    return {
        "dispatchers": dispatchers,
        "seconds_until_all_initial_state": round(seconds, 2),
        "initial_state_bytes": size,
        "all_complete": all(count == sizes[0][1] for _, count in sizes),
        "rss_growth_bytes": grown,
        "rss_growth_vs_one_encoding": round(grown / size, 2),
    }


if __name__ == "__main__":
    asyncio.run(_probe_main(int(sys.argv[1]), sys.argv[2]))
