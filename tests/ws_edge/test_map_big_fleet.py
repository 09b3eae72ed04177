"""The dispatch map at fleet scale, in a real Chromium against the real services: 10,000 technicians of one tenant,
then 1,000 updates a second over protocol v2 for 60 seconds.

Measured in the page with the browser's own instruments while the updates flow: the time between animation frames
(``requestAnimationFrame``), long tasks (``PerformanceObserver``, every task over 50 ms) and the JavaScript heap
(``performance.memory``, precise with ``--enable-precise-memory-info``). Then every marker's latest fix must be
the projector's table's, and every marker drawn where its fix is once the glides are over. The figures go to
``test-artifacts/browser/big-fleet.json`` (docs/benchmarks.md quotes them).
"""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.async_api import Browser

from locstream.kafka import ensure_topic
from schemas.claims import Role
from schemas.events import Event, LocationRecorded
from tests.support.browser import ARTIFACTS, shot, sign_in
from tests.support.events import location, profile
from tests.support.kafka_io import produce
from tests.support.stack import Stack, eventually

pytestmark = pytest.mark.integration

TENANT = "bigfleet"
TECHNICIANS = 10_000
PER_SECOND = 1_000
SECONDS = 60
STATUSES = ("available", "on_job", "en_route", "break", "offline")
CENTRE = (52.52, 13.40)  # a metropolitan area: about 60 x 70 km around Berlin
SPREAD = (0.27, 0.5)

PROBE = """() => {
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
  const client = window.locstreamMap.client, received = client.updatesReceived;
  const drawn = window.locstreamMap.layer.frames;
  window.bigFleetProbe = { stop() {
    running = false; observer.disconnect(); clearInterval(sampler); sample();
    return { frames, longTasks, heap, updates: client.updatesReceived - received,
             draws: window.locstreamMap.layer.frames - drawn };
  } };
}"""


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _fleet(rng: random.Random) -> tuple[list[Event], dict[str, list[float]]]:
    """Every technician's name, status and first fix, recorded a minute ago."""
    at = datetime.now(UTC) - timedelta(minutes=1)
    events: list[Event] = []
    positions: dict[str, list[float]] = {}
    for i in range(TECHNICIANS):
        technician = f"tech-{i:05d}"
        lat = CENTRE[0] + rng.uniform(-SPREAD[0], SPREAD[0])
        lon = CENTRE[1] + rng.uniform(-SPREAD[1], SPREAD[1])
        positions[technician] = [lat, lon]
        events.append(profile(TENANT, technician, at, name=f"Technician {i:05d}", status=rng.choice(STATUSES)))
        events.append(location(TENANT, technician, at, lat, lon, speed_kmh=0.0, accuracy_meters=8.0))
    return events, positions


def _updates(rng: random.Random, positions: dict[str, list[float]]) -> list[Event]:
    """``PER_SECOND * SECONDS`` fixes of technicians picked at random, each a step of up to ~100 m from its last,
    device times on the schedule they are sent at."""
    began = datetime.now(UTC)
    ids = list(positions)
    events: list[Event] = []
    for n in range(PER_SECOND * SECONDS):
        technician = rng.choice(ids)
        here = positions[technician]
        here[0] += rng.uniform(-0.0009, 0.0009)
        here[1] += rng.uniform(-0.0009, 0.0009)
        at = began + timedelta(seconds=n / PER_SECOND)
        events.append(location(TENANT, technician, at, here[0], here[1], speed_kmh=rng.uniform(0, 60), heading=0.0))
    return events


async def test_ten_thousand_technicians_at_a_thousand_updates_a_second_stay_smooth(
    stack: Stack, browser: Browser
) -> None:
    rng = random.Random(22)
    first, positions = _fleet(rng)
    await ensure_topic(stack.kafka)
    await produce(stack.kafka, first)
    await stack.start("projector")
    edge = await stack.start("ws-edge")
    token = stack.token(TENANT, Role.DISPATCHER, ttl=3600)

    async def edge_has_everyone() -> bool:
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.get(
                f"{edge.url}/api/v1/field-service/technicians/locations/active",
                headers={"Authorization": f"Bearer {token}"},
            )
        return answer.status_code == 200 and len(answer.json()) == TECHNICIANS

    await eventually(edge_has_everyone, timeout=120, what="the edge to hold every technician")
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    await sign_in(page, f"{edge.url}/map", token)
    assert await page.evaluate("window.locstreamMap.client.options.protocol") == 2
    await page.wait_for_function(
        f"window.locstreamMap.fleet.size === {TECHNICIANS} && window.locstreamMap.clusters.clusters.length > 0",
        timeout=60_000,
    )
    await shot(page, "big-fleet-start")

    updates = _updates(rng, positions)
    await page.evaluate(PROBE)
    began = time.monotonic()
    await produce(stack.kafka, updates, per_second=PER_SECOND)
    sent_for = time.monotonic() - began
    last = updates[-1]
    assert isinstance(last, LocationRecorded)
    await page.wait_for_function(  # the feed has delivered the last update
        "([id, lat, lon]) => { const t = window.locstreamMap.at(id); return t && t[0] === lat && t[1] === lon; }",
        arg=[last.technician_id, last.data.latitude, last.data.longitude],
        timeout=30_000,
    )
    measured = await page.evaluate("window.bigFleetProbe.stop()")
    await shot(page, "big-fleet")

    snapshot = await stack.snapshot()
    table = {s.technician_id: [s.fix.latitude, s.fix.longitude] for s in snapshot.states if s.fix is not None}
    assert len(table) == TECHNICIANS
    latest = await page.evaluate(
        "Object.fromEntries([...window.locstreamMap.fleet.tracks].map(([id, t]) => [id, t.to]))"
    )
    assert latest == table, "every marker's latest fix is the table's"
    await page.wait_for_function("window.locstreamMap.fleet.glidingUntil <= performance.now()", timeout=15_000)
    drawn = await page.evaluate(
        "(() => { const m = window.locstreamMap;"
        " return Object.fromEntries([...m.fleet.tracks.keys()].map((id) => [id, m.shown(id)])); })()"
    )
    assert drawn == table, "every marker is drawn where its fix is once the glides are over"

    frames = measured["frames"]
    figures = {
        "technicians": TECHNICIANS,
        "updates_sent": len(updates),
        "sent_in_seconds": round(sent_for, 1),
        "updates_received": measured["updates"],
        "frames": len(frames),
        "frame_ms_p50": round(_percentile(frames, 0.50), 1),
        "frame_ms_p95": round(_percentile(frames, 0.95), 1),
        "frame_ms_p99": round(_percentile(frames, 0.99), 1),
        "frame_ms_max": round(max(frames), 1),
        "draws": measured["draws"],
        "long_tasks": len(measured["longTasks"]),
        "long_task_ms_max": round(max(measured["longTasks"], default=0.0), 1),
        "heap_mb_max": round(max(measured["heap"]) / 2**20, 1),
        "heap_mb_end": round(measured["heap"][-1] / 2**20, 1),
    }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "big-fleet.json").write_text(json.dumps(figures, indent=2) + "\n")
    # Every update reaches the page unless the edge conflated a slow client's (two fixes of one technician in one
    # batch); the positions above are the proof that nothing was lost.
    assert figures["updates_received"] >= len(updates) * 0.95, figures
    assert figures["frame_ms_p95"] <= 33.0, figures
    assert figures["long_task_ms_max"] <= 100.0, figures
    assert figures["heap_mb_max"] <= 200.0, figures
