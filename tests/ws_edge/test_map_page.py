"""The dispatch map page in a real Chromium (Debian's, driven by Playwright), against the real services.

Two edges: B serves the page and answers its polling fallback; A carries its live feed (``map_feed_url``), so
stopping A leaves the page on B to fall back to polling, and restarting A brings it back live. Every test saves
a screenshot to ``test-artifacts/browser/`` (``LOCSTREAM_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright

from schemas.claims import Role
from tests.support.maps import WS_PATH
from tests.support.stack import Service, Stack

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("LOCSTREAM_CHROMIUM", "/usr/bin/chromium")
HAS_CHROMIUM = Path(CHROMIUM).exists()
ARTIFACTS = Path(os.environ.get("LOCSTREAM_TEST_ARTIFACTS", "test-artifacts")) / "browser"
TENANT = "acme-fiber"
LAGOS = {"tech-ada": (6.5244, 3.3792), "tech-bola": (6.45, 3.40)}
BERLIN = {"tech-dora": (52.52, 13.405)}
# Timing knobs of the page (read from its URL): retry fast, poll after 2 failed connects, every half second.
QUICK = "reconnect_ms=200&max_reconnect_ms=800&poll_after=2&poll_ms=500"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert HAS_CHROMIUM, f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class Fleet:
    stack: Stack
    feed: Service  # edge A: the live feed
    page_edge: Service  # edge B: the page and the polling fallback
    api: Service

    async def post(self, technician: str, latitude: float, longitude: float) -> None:
        token = self.stack.token(TENANT, Role.DEVICE_GATEWAY)
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.post(
                f"{self.api.url}/api/v1/field-service/technicians/{technician}/location",
                json={"latitude": latitude, "longitude": longitude},
                headers={"Authorization": f"Bearer {token}"},
            )
        assert answer.status_code == 202, answer.text

    async def restart_feed(self) -> None:
        self.feed = await self.stack.start("ws-edge", port=self.feed.port)


async def _fleet(stack: Stack) -> Fleet:
    await stack.start("projector")
    api = await stack.start("producers")
    feed_port, page_port = stack.port(), stack.port()
    stack.env["LOCSTREAM_EDGE_ALLOWED_ORIGINS"] = f'["http://127.0.0.1:{page_port}"]'  # the page's origin, on A
    feed = await stack.start("ws-edge", port=feed_port)
    page_edge = await stack.start(
        "ws-edge",
        port=page_port,
        env={"LOCSTREAM_EDGE_MAP_FEED_URL": f"ws://127.0.0.1:{feed_port}{WS_PATH}"},
    )
    fleet = Fleet(stack, feed, page_edge, api)
    for technician, (lat, lon) in (LAGOS | BERLIN).items():
        await fleet.post(technician, lat, lon)
    return fleet


async def _open_map(browser: Browser, fleet: Fleet, role: Role = Role.DISPATCHER) -> Page:
    page = await browser.new_page(viewport={"width": 1200, "height": 800})
    await page.goto(f"{fleet.page_edge.url}/map?{QUICK}")
    await page.fill("#token", fleet.stack.token(TENANT, role, ttl=3600))
    await page.click("#login button[type=submit]")
    await _mode(page, "live")
    await page.wait_for_function("window.locstreamMap.markers.size === 3")
    return page


async def _mode(page: Page, mode: str, timeout: float = 20_000) -> None:
    await page.wait_for_function(f"document.getElementById('badge').dataset.mode === '{mode}'", timeout=timeout)


async def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000


def _at(technician: str, lat: float, lon: float) -> str:
    return (
        f"(() => {{ const m = window.locstreamMap.markers.get('{technician}'); if (!m) return false;"
        f" const p = m.getLatLng(); return Math.abs(p.lat - {lat}) < 1e-9 && Math.abs(p.lng - {lon}) < 1e-9; }})()"
    )


async def test_the_map_shows_live_and_a_posted_fix_moves_its_marker_within_a_second(
    stack: Stack, browser: Browser
) -> None:
    fleet = await _fleet(stack)
    page = await _open_map(browser, fleet)
    assert await page.text_content("#badge") == "Live" and await page.text_content("#count") == "3"
    assert "token" not in page.url and await page.evaluate("sessionStorage.getItem('locstream.token')")
    await fleet.post("tech-ada", 6.6, 3.5)
    posted = time.monotonic()
    await page.wait_for_function(_at("tech-ada", 6.6, 3.5), timeout=1_000)
    assert time.monotonic() - posted <= 1.0
    assert await page.evaluate(_at("tech-bola", *LAGOS["tech-bola"]))  # the others stayed
    await _shot(page, "live")


async def test_stopping_the_feed_shows_disconnected_then_polling_then_live_with_no_position_missing(
    stack: Stack, browser: Browser
) -> None:
    fleet = await _fleet(stack)
    page = await _open_map(browser, fleet)
    await page.evaluate(
        """() => { const client = window.locstreamMap.client; window.seenModes = [];
                   client.addEventListener('status', () => window.seenModes.push(client.mode)); }"""
    )
    fleet.feed.kill9()
    await _mode(page, "polling")
    seen = await page.evaluate("window.seenModes")
    assert seen[0] == "disconnected" and "polling" in seen, seen
    await _shot(page, "polling")
    await fleet.post("tech-bola", 6.47, 3.42)  # while the feed is down: polling shows it
    await page.wait_for_function(_at("tech-bola", 6.47, 3.42), timeout=10_000)
    await fleet.restart_feed()
    await fleet.post("tech-ada", 6.61, 3.51)
    await _mode(page, "live", timeout=30_000)
    await page.wait_for_function(_at("tech-ada", 6.61, 3.51), timeout=10_000)
    async with httpx.AsyncClient(timeout=10) as client:
        table = (
            await client.get(
                f"{fleet.page_edge.url}/api/v1/field-service/technicians/locations/active",
                headers={"Authorization": f"Bearer {stack.token(TENANT)}"},
            )
        ).json()
    for entry in table:  # every technician where the service has it: nothing missed while the feed was down
        assert await page.evaluate(_at(entry["technician_id"], entry["latitude"], entry["longitude"])), entry
    await _shot(page, "live-again")


async def test_the_viewport_filter_hides_technicians_outside_it(stack: Stack, browser: Browser) -> None:
    fleet = await _fleet(stack)
    page = await _open_map(browser, fleet)
    await page.evaluate("window.locstreamMap.map.fitBounds([[6.3, 3.2], [6.7, 3.6]], {animate: false})")
    await page.check("#viewport")
    await page.wait_for_function("window.locstreamMap.markers.size === 2")
    shown = await page.evaluate("[...window.locstreamMap.markers.keys()].sort()")
    assert shown == sorted(LAGOS)
    await fleet.post("tech-dora", 52.53, 13.41)  # outside the view: still not shown
    await fleet.post("tech-ada", 6.55, 3.39)
    await page.wait_for_function(_at("tech-ada", 6.55, 3.39), timeout=5_000)
    assert await page.evaluate("!window.locstreamMap.markers.has('tech-dora')")
    await _shot(page, "viewport")


async def test_a_replay_from_the_panel_plays_to_its_end(stack: Stack, browser: Browser) -> None:
    began = datetime.now(UTC) - timedelta(seconds=5)
    fleet = await _fleet(stack)
    for step in range(1, 6):
        await fleet.post("tech-ada", 6.5244 + step / 100, 3.3792)
    page = await _open_map(browser, fleet, Role.ANALYST)
    await page.evaluate(
        """([from, to]) => {
            const local = (iso) => { const d = new Date(iso);
                return new Date(d - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19); };
            document.getElementById('replay-from').value = local(from);
            document.getElementById('replay-to').value = local(to); }""",
        [began.isoformat(), (datetime.now(UTC) + timedelta(seconds=30)).isoformat()],
    )
    await page.fill("#replay-speed", "1000")
    await page.click("#replay button[type=submit]")
    await page.wait_for_function(
        "document.getElementById('replay-status').textContent.startsWith('replay done')", timeout=20_000
    )
    assert await page.evaluate(_at("tech-ada", 6.5744, 3.3792))  # where the last replayed fix put it
    await _shot(page, "replay")


async def test_a_fence_is_drawn_and_an_arrival_shows_a_toast_and_a_notification(stack: Stack, browser: Browser) -> None:
    fleet = await _fleet(stack)
    await stack.start("geofencer")
    site = LAGOS["tech-ada"]
    fence = {
        "latitude": site[0] + 0.01,
        "longitude": site[1],
        "radius_meters": 120,
        "name": "Cabinet 12",
        "job_id": "j12",
    }
    dispatcher = fleet.stack.token(TENANT, Role.DISPATCHER)
    async with httpx.AsyncClient(timeout=10) as client:
        put = await client.put(
            f"{fleet.api.url}/api/v1/field-service/geofences/cabinet-12",
            json=fence,
            headers={"Authorization": f"Bearer {dispatcher}"},
        )
    assert put.status_code == 200, put.text
    context = await browser.new_context(viewport={"width": 1200, "height": 800})
    await context.grant_permissions(["notifications"], origin=fleet.page_edge.url)
    await context.add_init_script(  # what the page asks the browser to show, recorded
        "window.shownNotifications = []; window.Notification = class extends window.Notification {"
        " constructor(title, options) { super(title, options); window.shownNotifications.push(title); } };"
    )
    page = await context.new_page()
    await page.goto(f"{fleet.page_edge.url}/map?{QUICK}&toast_ms=60000")
    await page.fill("#token", fleet.stack.token(TENANT, Role.DISPATCHER, ttl=3600))
    await page.click("#login button[type=submit]")
    await _mode(page, "live")
    await page.wait_for_function("window.locstreamMap.fences.size === 1")
    drawn = await page.evaluate(
        "(() => { const f = window.locstreamMap.fences.get('cabinet-12');"
        " return [f.getRadius(), f.getLatLng().lat]; })()"
    )
    assert drawn == [120, site[0] + 0.01]
    await page.click("#notify")
    await page.wait_for_function("document.getElementById('notify').textContent === 'Notifications on'")
    await fleet.post("tech-ada", site[0] + 0.01, site[1])  # into the fence
    await page.wait_for_function("window.locstreamMap.toasts.length === 1", timeout=20_000)
    assert await page.inner_text("#toasts .toast.enter") == "tech-ada arrived at Cabinet 12"
    assert await page.evaluate("window.shownNotifications") == ["tech-ada arrived at Cabinet 12"]
    await page.evaluate(f"window.locstreamMap.map.setView([{site[0] + 0.01}, {site[1]}], 15, {{animate: false}})")
    await _shot(page, "geofence-arrival")
    async with httpx.AsyncClient(timeout=10) as client:  # a removed fence leaves the map
        removed = await client.delete(
            f"{fleet.api.url}/api/v1/field-service/geofences/cabinet-12",
            headers={"Authorization": f"Bearer {dispatcher}"},
        )
    assert removed.status_code == 204
    await page.wait_for_function("window.locstreamMap.fences.size === 0")
    await context.close()
