"""HTTP load for the ingest API: open-loop (a fixed arrival rate, for latency) or closed-loop (for ceilings).

A raw HTTP/1.1 keep-alive client over asyncio streams, so the generator costs far less than the server it
measures. Each POST carries its send time as ``recorded_at``, which comes back as ``last_update`` on the
WebSocket: the end-to-end latency is measured from it. Prints one JSON summary line when done.

``python -m bench.httpload --url http://127.0.0.1:8001 --token T --rate 1000 --duration 10``
``python -m bench.httpload --url http://127.0.0.1:8001 --token T --concurrency 32 --duration 10``
``python -m bench.httpload --url http://127.0.0.1:8001 --token T --concurrency 8 --batch 100 --duration 10`` (batches
of 100 fixes, each with its own event_id, to ``/locations/batch``; fixes counted from each answer's ``accepted``)
``python -m bench.httpload --url ... --token T --protocol osmand --device-key K --concurrency 32`` (a tracking app's
endpoint: osmand, owntracks, or overland with ``--batch`` fixes per request)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from urllib.parse import urlsplit

from bench.stats import percentiles


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def post(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        self.writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
        status_line = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        answer = await self.reader.readexactly(length) if length else b""
        return int(status_line.split()[1]), answer


class Load:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        parts = urlsplit(args.url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.sent = 0
        self.missed = 0
        self.statuses: Counter[int] = Counter()
        self.latencies: list[float] = []
        self.idle: list[Connection] = []
        self.opened = 0
        self.fixes_accepted = 0

    def request(self) -> tuple[bytes, bytes]:
        if self.args.protocol != "native":
            return self.device_request()
        if self.args.batch:
            return self.batch_request()
        technician = f"{self.args.technician_prefix}{self.sent % self.args.technicians}"
        self.sent += 1
        recorded = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        body = (
            f'{{"latitude": {6.4 + (self.sent % 1000) / 10000}, "longitude": 3.38, "accuracy_meters": 5.0,'
            f' "recorded_at": "{recorded}"}}'
        ).encode()
        head = (
            f"POST /api/v1/field-service/technicians/{technician}/location HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Authorization: Bearer {self.args.token}\r\nContent-Type: application/json\r\nContent-Length: "
        ).encode()
        return head, body

    def batch_request(self) -> tuple[bytes, bytes]:
        recorded = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        fixes = []
        for _ in range(self.args.batch):
            technician = f"{self.args.technician_prefix}{self.sent % self.args.technicians}"
            self.sent += 1
            fixes.append(
                f'{{"event_id": "{uuid.uuid4()}", "technician_id": "{technician}", "recorded_at": "{recorded}",'
                f' "latitude": {6.4 + (self.sent % 1000) / 10000}, "longitude": 3.38, "accuracy_meters": 5.0}}'
            )
        body = ('{"fixes": [' + ", ".join(fixes) + "]}").encode()
        head = (
            f"POST /api/v1/field-service/locations/batch HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Authorization: Bearer {self.args.token}\r\nContent-Type: application/json\r\nContent-Length: "
        ).encode()
        return head, body

    def device_request(self) -> tuple[bytes, bytes]:
        """A tracking app's request (``--protocol``) as the app sends it, with the device key; every fix distinct
        (its time in ms and its latitude move), so none is taken for a resend."""
        key, host, now = self.args.device_key, self.host, time.time()
        count = max(1, self.args.batch) if self.args.protocol == "overland" else 1
        self.sent += count
        latitude = 6.4 + (self.sent % 100_000) / 1_000_000
        if self.args.protocol == "osmand":  # the legacy apps: all in the query string, an empty body
            query = f"id={key}&timestamp={int(now * 1000)}&lat={latitude}&lon=3.38&speed=12.0&accuracy=5.0&batt=80"
            return f"POST /api/v1/ingest/osmand?{query} HTTP/1.1\r\nHost: {host}\r\nContent-Length: ".encode(), b""
        if self.args.protocol == "owntracks":
            auth = base64.b64encode(f"bench:{key}".encode()).decode()
            body = json.dumps(
                {
                    "_type": "location",
                    "lat": latitude,
                    "lon": 3.38,
                    "tst": int(now),
                    "acc": 5,
                    "vel": 20,
                    "batt": 80,
                    "tid": "bn",
                }
            ).encode()
            head = (
                f"POST /api/v1/ingest/owntracks HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {auth}\r\n"
                "Content-Type: application/json\r\nContent-Length: "
            )
            return head.encode(), body
        stamp = datetime.now(UTC)
        features = [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [3.38, latitude + i / 10_000_000]},
                "properties": {"timestamp": stamp.isoformat(), "speed": 4.0, "horizontal_accuracy": 5},
            }
            for i in range(count)
        ]
        head = (
            f"POST /api/v1/ingest/overland HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
            "Content-Type: application/json\r\nContent-Length: "
        )
        return head.encode(), json.dumps({"locations": features}).encode()

    async def connect(self) -> Connection:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self.opened += 1
        return Connection(reader, writer)

    async def one(self, connection: Connection) -> None:
        head, body = self.request()
        began = time.perf_counter()
        try:
            status, answer = await asyncio.wait_for(connection.post(head, body), self.args.timeout)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError, TimeoutError):
            self.statuses[0] += 1
            connection.writer.close()
            return
        self.latencies.append(time.perf_counter() - began)
        self.statuses[status] += 1
        if status == 202:
            self.fixes_accepted += json.loads(answer)["accepted"] if self.args.batch else 1
        elif status == 200:  # the apps' endpoints
            rejected = len(json.loads(answer).get("rejected", [])) if self.args.protocol == "overland" else 0
            self.fixes_accepted += (max(1, self.args.batch) if self.args.protocol == "overland" else 1) - rejected
        self.idle.append(connection)

    async def open_loop(self) -> None:
        rate, duration = self.args.rate, self.args.duration
        began = time.monotonic()
        tasks: set[asyncio.Task[None]] = set()
        i = 0
        while (due := began + i / rate) < began + duration:
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            i += 1
            if self.idle:
                connection = self.idle.pop()
            elif self.opened < self.args.connections:
                connection = await self.connect()
            else:
                self.missed += 1  # every connection busy: the server is not keeping up with the rate
                continue
            task = asyncio.create_task(self.one(connection))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks)

    async def closed_loop(self) -> None:
        deadline = time.monotonic() + self.args.duration

        async def worker() -> None:
            connection = await self.connect()
            while time.monotonic() < deadline:
                await self.one(connection)
                if not self.idle:
                    connection = await self.connect()
                else:
                    connection = self.idle.pop()

        await asyncio.gather(*(worker() for _ in range(self.args.concurrency)))

    async def run(self) -> dict[str, object]:
        began = time.monotonic()
        if self.args.rate:
            await self.open_loop()
        else:
            await self.closed_loop()
        elapsed = time.monotonic() - began
        for connection in self.idle:
            connection.writer.close()
        return {
            "sent": self.sent,
            "accepted": self.statuses.get(202, 0) + self.statuses.get(200, 0),
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "missed": self.missed,
            "seconds": round(elapsed, 4),
            "accepted_per_second": round(self.statuses.get(202, 0) / elapsed, 1),
            "fixes_accepted": self.fixes_accepted,
            "fixes_per_second": round(self.fixes_accepted / elapsed, 1),
            "latency": percentiles(self.latencies),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--rate", type=float, default=0.0, help="open loop: requests per second (0: closed loop)")
    parser.add_argument("--concurrency", type=int, default=16, help="closed loop: requests in flight")
    parser.add_argument("--connections", type=int, default=256, help="open loop: connection pool limit")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--technicians", type=int, default=500, help="round-robin over this many technician ids")
    parser.add_argument("--technician-prefix", default="tech-")
    parser.add_argument("--batch", type=int, default=0, help="fixes per request to /locations/batch (0: single)")
    parser.add_argument(
        "--protocol",
        default="native",
        choices=["native", "osmand", "owntracks", "overland"],
        help="a tracking app's endpoint instead of the native one (needs --device-key)",
    )
    parser.add_argument("--device-key", default="", help="the device's key, for --protocol")
    parser.add_argument("--timeout", type=float, default=30.0, help="a request unanswered this long counts as failed")
    args = parser.parse_args()
    try:
        import uvloop

        result = uvloop.run(Load(args).run())
    except ImportError:
        result = asyncio.run(Load(args).run())
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
