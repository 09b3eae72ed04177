"""The ``map-page`` scenario: the dispatch map in headless Chromium at fleet scale, side by side with plain Leaflet.

One tenant of ``technicians`` (random positions over a city, five statuses) on a topic, one ``locstream ws-edge``
process, then for each page in turn ``per_second`` fixes a second for ``seconds`` seconds (each a random
technician's step of up to 100 m), while the page is measured with the browser's own instruments (``FRAME_PROBE``):
the time between animation frames, long tasks, the JavaScript heap.

The pages:

- ``locstream``: ``/map`` as served (clusters from a worker, one canvas, gliding markers);
- ``plain-leaflet``: what one would write first with Leaflet, and a generous version of it: one circle marker per
  technician on Leaflet's canvas renderer (``preferCanvas``; SVG or DOM markers would be slower), moved with
  ``setLatLng`` on every update, no labels, fed by the same ``locstream-client`` (so it gets in-place merging too).
  It is served by Playwright on the edge's origin (``page.route``), so both load Leaflet and the client alike.

The workload (``fleet``, ``updates``) and the probe are shared with ``tests/ws_edge/test_map_big_fleet.py``.
"""

from __future__ import annotations

import os
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.scenario import BenchContext, Metrics, scenario
from bench.systems import JWT_SECRET, RunningSystem, free_port, service
from locstream.auth import issue_token
from locstream.kafka import append_records, ensure_topic, event_records
from locstream.settings import AuthSettings, KafkaSettings
from schemas.claims import Role
from schemas.events import (
    Event,
    LocationData,
    LocationRecorded,
    TechnicianData,
    TechnicianUpdated,
)

STATUSES = ("available", "on_job", "en_route", "break", "offline")
CENTRE = (52.52, 13.40)  # a metropolitan area: about 60 x 70 km around Berlin
SPREAD = (0.27, 0.5)
CHROMIUM = os.environ.get("LOCSTREAM_CHROMIUM", "/usr/bin/chromium")

# Installed in the page before the updates start; ``window.framesProbe.stop()`` returns what it saw. It reads the
# client of the dispatch map (window.locstreamMap) or of the plain page (window.benchMap).
FRAME_PROBE = """() => {
  const frames = [], longTasks = [], heap = [];
  let last = null, running = true;
  const tick = (t) => { if (last !== null) frames.push(t - last); last = t; if (running) requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) longTasks.push(e.duration);
  });
  observer.observe({ type: "longtask" });
  const sample = () => heap.push(performance.memory.usedJSHeapSize);
  const sampler = setInterval(sample, 1000);
  const client = (window.locstreamMap ?? window.benchMap).client, received = client.updatesReceived;
  window.framesProbe = { stop() {
    running = false; observer.disconnect(); clearInterval(sampler); sample();
    return { frames, longTasks, heap, updates: client.updatesReceived - received };
  } };
}"""

PLAIN_LEAFLET = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>plain Leaflet</title>
<link rel="stylesheet" href="/map/vendor/leaflet/leaflet.css">
<style>html, body, #map { margin: 0; height: 100%; }</style></head>
<body><div id="map"></div>
<script src="/map/vendor/leaflet/leaflet.js"></script>
<script type="module">
import { LocstreamClient } from "/client/locstream-client.js";
const map = L.map("map", { preferCanvas: true }).setView([52.52, 13.4], 10);
const markers = new Map();
const client = new LocstreamClient({ token: sessionStorage.getItem("bench.token") });
let fitted = false;
client.addEventListener("change", (event) => {
  for (const id of event.detail.changed ?? [...client.technicians.keys()]) {
    const t = client.technicians.get(id);
    const marker = markers.get(id);
    if (!t) { marker?.remove(); markers.delete(id); }
    else if (marker) marker.setLatLng([t.latitude, t.longitude]);
    else markers.set(id, L.circleMarker([t.latitude, t.longitude], { radius: 6, weight: 1 }).addTo(map));
  }
  if (!fitted && markers.size) {
    fitted = true;
    map.fitBounds(L.latLngBounds([...client.technicians.values()].map((t) => [t.latitude, t.longitude])));
  }
});
window.benchMap = { client, markers };
</script></body></html>"""


def fleet(
    tenant: str, technicians: int, rng: random.Random, at: datetime
) -> tuple[list[Event], dict[str, list[float]]]:
    """Every technician's name, status and first fix at ``at``; and where each is."""
    events: list[Event] = []
    positions: dict[str, list[float]] = {}
    for i in range(technicians):
        technician = f"tech-{i:05d}"
        lat = CENTRE[0] + rng.uniform(-SPREAD[0], SPREAD[0])
        lon = CENTRE[1] + rng.uniform(-SPREAD[1], SPREAD[1])
        positions[technician] = [lat, lon]
        events.append(
            TechnicianUpdated(
                event_id=uuid.uuid4(),
                tenant_id=tenant,
                technician_id=technician,
                recorded_at=at,
                received_at=at,
                data=TechnicianData(name=f"Technician {i:05d}", status=rng.choice(STATUSES)),
            )
        )
        events.append(_fix(tenant, technician, at, lat, lon, speed_kmh=0.0))
    return events, positions


def updates(
    tenant: str, count: int, per_second: int, rng: random.Random, positions: dict[str, list[float]]
) -> list[Event]:
    """``count`` fixes of technicians picked at random, each a step of up to ~100 m from its last (``positions`` moves
    along), device times on the schedule they are sent at (``per_second``) from now."""
    began = datetime.now(UTC)
    ids = list(positions)
    events: list[Event] = []
    for n in range(count):
        technician = rng.choice(ids)
        here = positions[technician]
        here[0] += rng.uniform(-0.0009, 0.0009)
        here[1] += rng.uniform(-0.0009, 0.0009)
        at = began + timedelta(seconds=n / per_second)
        events.append(_fix(tenant, technician, at, here[0], here[1], speed_kmh=rng.uniform(0, 60), heading=0.0))
    return events


def _fix(
    tenant: str, technician: str, at: datetime, lat: float, lon: float, speed_kmh: float, heading: float | None = None
) -> LocationRecorded:
    return LocationRecorded(
        event_id=uuid.uuid4(),
        tenant_id=tenant,
        technician_id=technician,
        recorded_at=at,
        received_at=at,
        data=LocationData(latitude=lat, longitude=lon, speed_kmh=speed_kmh, heading=heading),
    )


def figures(measured: dict[str, Any]) -> dict[str, float]:
    """The probe's raw samples as the figures the test asserts and the bench reports."""
    frames: list[float] = sorted(measured["frames"]) or [0.0]

    def at(q: float) -> float:
        return round(frames[min(len(frames) - 1, int(q * len(frames)))], 1)

    return {
        "updates_received": measured["updates"],
        "frames": len(measured["frames"]),
        "frame_ms_p50": at(0.50),
        "frame_ms_p95": at(0.95),
        "frame_ms_p99": at(0.99),
        "frame_ms_max": round(frames[-1], 1),
        "long_tasks": len(measured["longTasks"]),
        "long_task_ms_max": round(max(measured["longTasks"], default=0.0), 1),
        "heap_mb_max": round(max(measured["heap"]) / 2**20, 1),
        "heap_mb_end": round(measured["heap"][-1] / 2**20, 1),
    }


async def _produce(kafka: KafkaSettings, events: list[Event], per_second: float | None = None) -> None:
    await append_records(kafka, event_records(kafka, events), per_second=per_second, linger_ms=5)


@scenario(
    "map-page",
    {
        "small": [{"technicians": 500, "per_second": 100, "seconds": 3}],
        "full": [{"technicians": 10_000, "per_second": 1_000, "seconds": 60}],
    },
    headline="frame_ms_p95",
    higher_is_better=False,
    what="/map in headless Chromium: a tenant of N technicians, then R updates/s over v2 for S s; frame time,"
    " long tasks and JS heap measured in the page; then the same for plain Leaflet (one canvas circle marker"
    " per technician, moved on every update)",
    notes=[
        "target (issue 22): p95 frame time <= 33 ms, no long task over 100 ms, heap <= 200 MB at 10,000"
        " technicians and 1,000 updates/s"
    ],
    systems=("locstream",),
    standalone=True,
)
async def measure(system: RunningSystem, p: dict[str, Any], ctx: BenchContext) -> Metrics:
    """The dispatch map in headless Chromium with N technicians and R updates/s, and plain Leaflet beside it."""
    from playwright.async_api import async_playwright  # a test dependency: only this scenario needs it

    bootstrap, workdir = ctx.bootstrap, ctx.workdir

    rng = random.Random(22)
    tenant, technicians = "bigfleet", p["technicians"]
    topic = f"bench.map-page.{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings(bootstrap_servers=bootstrap, topic=topic)
    await ensure_topic(kafka)
    first, positions = fleet(tenant, technicians, rng, datetime.now(UTC) - timedelta(minutes=1))
    await _produce(kafka, first)
    port = free_port()
    env = {
        **os.environ,
        "LOCSTREAM_JWT_SECRET": JWT_SECRET,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_TOPIC": topic,
        "LOCSTREAM_DATA_DIR": str(workdir / topic),
    }
    token = issue_token(
        AuthSettings(jwt_secret=JWT_SECRET), tenant_id=tenant, sub="bench", role=Role.DISPATCHER, ttl_seconds=3600
    )
    base = f"http://127.0.0.1:{port}"
    results: dict[str, Any] = {"technicians": technicians, "updates_per_second": p["per_second"]}
    async with service(["ws-edge", "--port", str(port)], env, workdir / f"{topic}.log", f"{base}/readyz"):
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--no-first-run",
                    "--disable-component-update",
                    "--disable-sync",
                    "--enable-precise-memory-info",
                    # The plain page is fulfilled by Playwright, which Chrome's local network access checks take
                    # for a public page: its socket to 127.0.0.1 would be blocked.
                    "--disable-features=LocalNetworkAccessChecks",
                ],
            )
            try:
                for name in ("locstream", "plain-leaflet"):
                    page = await browser.new_page(viewport={"width": 1280, "height": 800})
                    if name == "locstream":
                        await page.goto(f"{base}/map")
                        await page.fill("#token", token)
                        await page.click("#login button[type=submit]")
                        loaded = f"window.locstreamMap.fleet.size === {technicians}"
                    else:
                        await page.route(
                            f"{base}/plain-leaflet",
                            lambda route: route.fulfill(body=PLAIN_LEAFLET, content_type="text/html"),
                        )
                        await page.goto(f"{base}/map")  # the origin, to keep the token in its sessionStorage
                        await page.evaluate("(t) => sessionStorage.setItem('bench.token', t)", token)
                        await page.goto(f"{base}/plain-leaflet")
                        loaded = f"window.benchMap && window.benchMap.markers.size === {technicians}"
                    await page.wait_for_function(loaded, timeout=120_000)
                    await page.evaluate(FRAME_PROBE)
                    sent = updates(tenant, p["per_second"] * p["seconds"], p["per_second"], rng, positions)
                    results[f"{'' if name == 'locstream' else 'plain_'}updates_sent"] = len(sent)
                    await _produce(kafka, sent, per_second=p["per_second"])
                    await page.wait_for_timeout(1000)  # the last updates on their way
                    measured = figures(await page.evaluate("window.framesProbe.stop()"))
                    results.update({(key if name == "locstream" else f"plain_{key}"): v for key, v in measured.items()})
                    await page.close()
            finally:
                await browser.close()
    results["plain_over_locstream_frame_ms_p95"] = round(results["plain_frame_ms_p95"] / results["frame_ms_p95"], 2)
    return results
