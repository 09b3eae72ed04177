"""The unrelated tenant of the noisy-neighbour suite: one technician posting a fix every ``interval`` and one
dispatcher's map watching for each, with the time from sending the POST to the frame on the map (and to the POST's
answer, which tells the ingest API's share from the rest of the way).

It runs as a process of its own (``python -m tests.neighbours.victim API_URL EDGE_WS_URL TECHNICIAN_TOKEN
DISPATCHER_TOKEN OUT``), so that the attacks the suite drives from its own process (10,000 handshakes...) do not
delay its measurements. Each fix's latitude carries its sequence number, so a frame names the POST it came from.
Every sample and every 5xx, failed POST or close of the map goes to OUT as a JSON line with its wall-clock time;
the suite cuts them into its phases (``samples``).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx
import websockets
from websockets.exceptions import ConnectionClosed

WS_PATH = "/api/v1/field-service/ws/technician-locations"
TENANT = "quiet-fleet"
TECHNICIAN = "quiet-1"
_BASE_LATITUDE = 6.0
_STEP = 1e-5  # degrees of latitude per fix: its sequence number, read back from the frame


@dataclass
class Window:
    """What the victim saw during one phase."""

    latencies: list[float] = field(default_factory=list)  # POST sent -> frame on the map, seconds
    answers: list[float] = field(default_factory=list)  # POST sent -> its 202 (the ingest API's share), seconds
    errors: list[str] = field(default_factory=list)  # 5xx, failed POSTs, the map closed
    posts: int = 0

    def p99(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else float("inf")

    def figures(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        return {
            "posts": self.posts,
            "frames": len(ordered),
            "p50_ms": round(ordered[len(ordered) // 2] * 1000, 1) if ordered else None,
            "p99_ms": round(self.p99() * 1000, 1) if ordered else None,
            "max_ms": round(ordered[-1] * 1000, 1) if ordered else None,
            "post_max_ms": round(max(self.answers) * 1000, 1) if self.answers else None,
            "errors": self.errors[:10],
        }


def samples(path: Path, start: float, end: float) -> Window:
    """The victim's samples of the POSTs sent in ``[start, end)`` (wall-clock seconds)."""
    window = Window()
    for line in path.read_text().splitlines():
        sample = json.loads(line)
        if not start <= sample["t"] < end:
            continue
        if "error" in sample:
            window.errors.append(sample["error"])
        else:
            window.posts += 1
            if sample.get("latency") is not None:
                window.latencies.append(sample["latency"])
            if sample.get("post") is not None:
                window.answers.append(sample["post"])
    return window


class _Victim:
    def __init__(self, api: str, edge: str, technician: str, dispatcher: str, out: TextIO) -> None:
        self.api, self.edge, self.technician, self.dispatcher, self.out = api, edge, technician, dispatcher, out
        self._sent: dict[int, float] = {}
        self._posted: dict[int, float] = {}  # sequence -> wall time of the POST
        self._answered: dict[int, float] = {}  # sequence -> seconds the POST took to be answered 202

    def _write(self, sample: dict[str, Any]) -> None:
        self.out.write(json.dumps(sample) + "\n")
        self.out.flush()

    async def run(self, interval: float) -> None:
        url = f"{self.edge}{WS_PATH}?token={self.dispatcher}&protocol=1"
        async with websockets.connect(url) as ws:
            assert json.loads(await ws.recv())["type"] == "connected"
            assert json.loads(await ws.recv())["type"] == "initial_state"
            sys.stdout.write("ready\n")
            sys.stdout.flush()
            await asyncio.gather(self._watch(ws), self._post(interval))

    async def _post(self, interval: float) -> None:
        url = f"{self.api}/api/v1/field-service/technicians/{TECHNICIAN}/location"
        headers = {"Authorization": f"Bearer {self.technician}"}
        sequence = 0
        async with httpx.AsyncClient(timeout=10) as http:
            while True:
                began = time.monotonic()
                sequence += 1
                sent = self._sent[sequence] = time.perf_counter()
                self._posted[sequence] = time.time()
                body = {"latitude": _BASE_LATITUDE + sequence * _STEP, "longitude": 3.0}
                try:
                    answer = await http.post(url, json=body, headers=headers)
                    if sequence in self._sent:  # its frame not come yet
                        self._answered[sequence] = time.perf_counter() - sent
                    if answer.status_code != 202:
                        self._write({"t": time.time(), "error": f"POST {answer.status_code}: {answer.text[:120]}"})
                except httpx.HTTPError as exc:
                    self._write({"t": time.time(), "error": f"POST failed: {exc!r}"})
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - began)))

    async def _watch(self, ws: Any) -> None:
        try:
            async for raw in ws:
                arrived = time.perf_counter()
                message = json.loads(raw)
                if message.get("type") != "location_update":
                    continue
                sequence = round((message["data"]["latitude"] - _BASE_LATITUDE) / _STEP)
                sent, posted = self._sent.pop(sequence, None), self._posted.pop(sequence, None)
                if sent is not None and posted is not None:  # (a frame may come before its POST's answer)
                    self._write({"t": posted, "latency": arrived - sent, "post": self._answered.pop(sequence, None)})
        except ConnectionClosed as exc:
            self._write({"t": time.time(), "error": f"map closed: {exc.rcvd.code if exc.rcvd else 'no close frame'}"})
            raise


def main() -> None:
    api, edge, technician, dispatcher, out = sys.argv[1:6]
    with open(out, "a") as sink:
        asyncio.run(_Victim(api, edge, technician, dispatcher, sink).run(interval=0.1))


if __name__ == "__main__":
    main()
