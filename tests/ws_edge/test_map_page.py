"""The dispatch map page in a real Chromium (Debian's, driven by Playwright), against the real services.

Two edges: B serves the page and answers its polling fallback; A carries its live feed (``map_feed_url``), so
stopping A leaves the page on B to fall back to polling, and restarting A brings it back live. Every test saves
a screenshot to ``test-artifacts/browser/`` (``LOCSTREAM_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import math
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, WebSocket

from schemas.claims import Role
from schemas.events import Event
from schemas.geofences import GeofenceDefined, Polygon, fence_cost
from tests.support.browser import fix_at
from tests.support.browser import mode as _mode
from tests.support.browser import shot as _shot
from tests.support.events import location, profile
from tests.support.kafka_io import define_fences, produce
from tests.support.maps import WS_PATH
from tests.support.stack import Service, Stack, eventually
from tests.support.traces import parked
from ws_edge.fence_views import UP_FRONT_POSITIONS

pytestmark = pytest.mark.integration

TENANT = "acme-fiber"
LAGOS = {"tech-ada": (6.5244, 3.3792), "tech-bola": (6.45, 3.40)}
BERLIN = {"tech-dora": (52.52, 13.405)}
NAMES = {
    "tech-ada": ("Ada Obi", "on_job"),
    "tech-bola": ("Bola Ade", "available"),
    "tech-dora": ("Dora Weber", "en_route"),
}
# Timing knobs of the page (read from its URL): retry fast, poll after 2 failed connects, every half second.
QUICK = "reconnect_ms=200&max_reconnect_ms=800&poll_after=2&poll_ms=500"
API = "/api/v1/field-service"


@dataclass
class Fleet:
    stack: Stack
    feed: Service  # edge A: the live feed
    page_edge: Service  # edge B: the page and the polling fallback
    api: Service
    projector: Service  # the history the trails and the exports read (CORS: it allows B's origin)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))  # the device time of the first fixes

    async def post(self, technician: str, latitude: float, longitude: float, **fields: Any) -> None:
        token = self.stack.token(TENANT, Role.DEVICE_GATEWAY)
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.post(
                f"{self.api.url}{API}/technicians/{technician}/location",
                json={"latitude": latitude, "longitude": longitude, **fields},
                headers={"Authorization": f"Bearer {token}"},
            )
        assert answer.status_code == 202, answer.text

    async def name(self, technician: str, name: str, status: str) -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.put(
                f"{self.api.url}{API}/technicians/{technician}",
                json={"name": name, "status": status},
                headers={"Authorization": f"Bearer {self.stack.token(TENANT, Role.ADMIN)}"},
            )
        assert answer.status_code == 202, answer.text

    async def restart_feed(self) -> None:
        self.feed = await self.stack.start("ws-edge", port=self.feed.port)


async def _fleet(stack: Stack, **page_env: str) -> Fleet:
    feed_port, page_port = stack.port(), stack.port()
    origin = f'["http://127.0.0.1:{page_port}"]'  # the page's origin: allowed on A's feed and the projector's history
    projector = await stack.start("projector", env={"LOCSTREAM_PROJECTOR_ALLOWED_ORIGINS": origin})
    api = await stack.start("producers")
    stack.env["LOCSTREAM_EDGE_ALLOWED_ORIGINS"] = origin
    feed = await stack.start("ws-edge", port=feed_port)
    page_edge = await stack.start(
        "ws-edge",
        port=page_port,
        env={
            "LOCSTREAM_EDGE_MAP_FEED_URL": f"ws://127.0.0.1:{feed_port}{WS_PATH}",
            "LOCSTREAM_EDGE_MAP_HISTORY_BASE": projector.url,
            **page_env,
        },
    )
    fleet = Fleet(stack, feed, page_edge, api, projector)
    # Five minutes ago: a test's next fix, a few seconds from now and a few kilometres away, is then a drive, not a
    # jump (docs/fix-quality.md), which no map would show.
    fleet.started = datetime.now(UTC) - timedelta(minutes=5)
    for technician, (lat, lon) in (LAGOS | BERLIN).items():
        await fleet.post(technician, lat, lon, recorded_at=fleet.started.isoformat())
        await fleet.name(technician, *NAMES[technician])
    return fleet


async def _open_map(
    browser: Browser, fleet: Fleet, role: Role = Role.DISPATCHER, technicians: int = 3, query: str = ""
) -> Page:
    """The map signed in, live, showing the fleet; ``query``: more of the page's knobs (``glide_max_ms=``)."""
    page = await browser.new_page(viewport={"width": 1200, "height": 800})
    await page.goto(f"{fleet.page_edge.url}/map?{QUICK}{'&' + query if query else ''}")
    await page.fill("#token", fleet.stack.token(TENANT, role, ttl=3600))
    await page.click("#login button[type=submit]")
    await _mode(page, "live")
    await page.wait_for_function(f"window.locstreamMap.fleet.size === {technicians}")
    return page


def _in_view(technician: str) -> str:
    return (
        f"(() => {{ const m = window.locstreamMap, p = m.shown('{technician}');"
        " return Boolean(p) && m.map.getBounds().contains(p); })()"
    )


@pytest.mark.serial
async def test_the_map_shows_live_and_a_posted_fix_moves_its_marker_within_a_second(
    stack: Stack, browser: Browser
) -> None:
    fleet = await _fleet(stack)
    page = await _open_map(browser, fleet)
    assert await page.text_content("#badge") == "Live" and await page.text_content("#count") == "3"
    assert "token" not in page.url and await page.evaluate("sessionStorage.getItem('locstream.token')")
    before = await page.evaluate("window.locstreamMap.shown('tech-ada')")
    await fleet.post("tech-ada", 6.6, 3.5)
    posted = time.monotonic()
    await page.wait_for_function(fix_at("tech-ada", 6.6, 3.5), timeout=1_000)
    assert time.monotonic() - posted <= 1.0
    assert await page.evaluate("window.locstreamMap.shown('tech-ada')") != before  # on its way
    await page.wait_for_function(
        fix_at("tech-ada", 6.6, 3.5, drawn=True), timeout=11_000
    )  # a glide ends where the fix is
    assert await page.evaluate(fix_at("tech-bola", *LAGOS["tech-bola"], drawn=True))  # the others stayed
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
    await page.wait_for_function(fix_at("tech-bola", 6.47, 3.42), timeout=10_000)
    await fleet.restart_feed()
    await fleet.post("tech-ada", 6.58, 3.45)
    await _mode(page, "live", timeout=30_000)
    await page.wait_for_function(fix_at("tech-ada", 6.58, 3.45), timeout=10_000)
    async with httpx.AsyncClient(timeout=10) as client:
        table = (
            await client.get(
                f"{fleet.page_edge.url}/api/v1/field-service/technicians/locations/active",
                headers={"Authorization": f"Bearer {stack.token(TENANT)}"},
            )
        ).json()
    for entry in table:  # every technician where the service has it: nothing missed while the feed was down
        assert await page.evaluate(fix_at(entry["technician_id"], entry["latitude"], entry["longitude"])), entry
    await _shot(page, "live-again")


async def test_the_viewport_filter_hides_technicians_outside_it(stack: Stack, browser: Browser) -> None:
    fleet = await _fleet(stack)
    page = await _open_map(browser, fleet)
    await page.evaluate("void window.locstreamMap.map.fitBounds([[6.3, 3.2], [6.7, 3.6]], {animate: false})")
    await page.check("#viewport")
    await page.wait_for_function("window.locstreamMap.fleet.size === 2")
    shown = await page.evaluate("[...window.locstreamMap.fleet.tracks.keys()].sort()")
    assert shown == sorted(LAGOS)
    await fleet.post("tech-dora", 52.53, 13.41)  # outside the view: still not shown
    await fleet.post("tech-ada", 6.55, 3.39)
    await page.wait_for_function(fix_at("tech-ada", 6.55, 3.39), timeout=5_000)
    assert await page.evaluate("!window.locstreamMap.fleet.tracks.has('tech-dora')")
    await _shot(page, "viewport")


async def test_a_replay_from_the_panel_plays_to_its_end(stack: Stack, browser: Browser) -> None:
    began = datetime.now(UTC) - timedelta(seconds=5)
    fleet = await _fleet(stack)
    for step in range(1, 6):  # 1.1 km every 40 s of device time
        at = fleet.started + timedelta(seconds=40 * step)
        await fleet.post("tech-ada", 6.5244 + step / 100, 3.3792, recorded_at=at.isoformat())
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
    assert await page.evaluate(fix_at("tech-ada", 6.5744, 3.3792))  # where the last replayed fix put it
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
            f"{fleet.api.url}{API}/geofences/cabinet-12",
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
    assert await page.inner_text("#toasts .toast.enter") == "Ada Obi arrived at Cabinet 12"
    assert await page.evaluate("window.shownNotifications") == ["Ada Obi arrived at Cabinet 12"]
    await page.evaluate(f"void window.locstreamMap.map.setView([{site[0] + 0.01}, {site[1]}], 15, {{animate: false}})")
    await _shot(page, "geofence-arrival")
    async with httpx.AsyncClient(timeout=10) as client:  # a removed fence leaves the map
        removed = await client.delete(
            f"{fleet.api.url}/api/v1/field-service/geofences/cabinet-12",
            headers={"Authorization": f"Bearer {dispatcher}"},
        )
    assert removed.status_code == 204
    await page.wait_for_function("window.locstreamMap.fences.size === 0")
    await context.close()


async def test_a_tenant_with_many_fences_gets_its_views_fences_and_another_places_when_the_map_goes_there(
    stack: Stack, browser: Browser
) -> None:
    """60 polygons of 1,000 positions: more than go up front (``ws_edge/fence_views.py``). The map, fitted to the
    fleet (Lagos, Berlin), asks for its view's and draws Lagos's 40; Suva's 20 come when the map is taken there."""
    lat, lon = LAGOS["tech-ada"]
    lagos = [_polygon(f"lagos-{i:03d}", lat + 0.002 * i, lon) for i in range(40)]
    suva = [_polygon(f"suva-{i:03d}", -18.14 + 0.002 * i, 178.44) for i in range(20)]
    assert sum(fence_cost(1_000) for _ in lagos + suva) > UP_FRONT_POSITIONS
    await define_fences(stack.kafka, lagos + suva)
    fleet = await _fleet(stack)
    page = await _open_map(browser, fleet)
    # what the map asks for: its view padded by half a view each way; Suva is outside it
    assert not await page.evaluate("window.locstreamMap.map.getBounds().pad(0.5).contains([-18.14, 178.44])")
    await page.wait_for_function("window.locstreamMap.fences.size === 40")
    await fleet.post("tech-ada", lat + 0.001, lon)  # its frame comes after the whole answer: nothing more is on the way
    await page.wait_for_function(fix_at("tech-ada", lat + 0.001, lon))
    drawn = await page.evaluate("[...window.locstreamMap.fences.keys()].sort()")
    assert drawn == [fence.geofence_id for fence in lagos]  # its view's, none of Suva's
    # void: setView returns the map, which Playwright would serialise with every layer (34 s here)
    await page.evaluate("void window.locstreamMap.map.setView([-18.13, 178.44], 13, {animate: false})")
    await page.wait_for_function("window.locstreamMap.fences.has('suva-019')")
    assert await page.evaluate("window.locstreamMap.fences.size") == 60
    await _shot(page, "fences-by-view")


def _polygon(fence_id: str, lat: float, lon: float) -> GeofenceDefined:
    ring = [
        [lon + 0.0008 * math.cos(i / 999 * math.tau), lat + 0.0008 * math.sin(i / 999 * math.tau)] for i in range(999)
    ]
    return GeofenceDefined(
        tenant_id=TENANT, geofence_id=fence_id, at=datetime.now(UTC), shape=Polygon(coordinates=[[*ring, ring[0]]])
    )


async def test_land_and_borders_are_drawn_without_tiles_and_a_tile_url_wins(stack: Stack, browser: Browser) -> None:
    fleet = await _fleet(stack)
    page = await _open_map(browser, fleet)
    await page.wait_for_function("document.querySelector('.leaflet-geography-pane canvas') !== null")
    drawn = await page.evaluate(  # land is drawn: some pixels of the geography canvas are not transparent
        """(() => { const c = document.querySelector('.leaflet-geography-pane canvas');
                    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                    let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; })()"""
    )
    assert drawn > 10_000
    tiles = f"{fleet.page_edge.url}/map/vendor/leaflet/images/layers.png?{{z}}/{{x}}/{{y}}"
    tiled = await stack.start(
        "ws-edge",
        env={
            "LOCSTREAM_EDGE_MAP_TILE_URL": tiles,
            "LOCSTREAM_EDGE_MAP_FEED_URL": fleet.feed.url.replace("http", "ws") + WS_PATH,
        },
    )
    other = await browser.new_page(viewport={"width": 1200, "height": 800})
    await other.goto(f"{tiled.url}/map")
    await other.wait_for_function("document.querySelectorAll('img.leaflet-tile-loaded').length > 0")
    assert await other.evaluate("document.querySelector('.leaflet-geography-pane') === null")


async def _crowd(stack: Stack, count: int) -> None:
    """``count`` technicians around Lagos, straight into the topic (a crowd the API would take long to post)."""
    at = datetime.now(UTC) - timedelta(seconds=30)
    statuses = ("available", "on_job", "en_route", "break", "offline", "training")
    events: list[Event] = []
    for i in range(count):
        events.append(profile(TENANT, f"crowd-{i:04d}", at, status=statuses[i % len(statuses)]))
        events.append(location(TENANT, f"crowd-{i:04d}", at, 6.40 + (i % 20) * 0.012, 3.25 + (i // 20) * 0.012))
    await produce(stack.kafka, events)


async def test_clusters_split_on_zoom_and_a_click_zooms_into_one(stack: Stack, browser: Browser) -> None:
    fleet = await _fleet(stack)
    await _crowd(stack, 400)
    page = await _open_map(browser, fleet, technicians=403)
    counted = """async (zoom) => { const m = window.locstreamMap; m.map.setView([6.5, 3.37], zoom, {animate: false});
        const answers = m.clusters.answers;
        m.clusters.query([-180, -85, 180, 85], zoom);
        const seq = m.clusters.seq;
        await new Promise((ok) => { const f = () => m.clusters.answers > answers && m.clusters.seq === seq
            ? ok() : setTimeout(f, 20); f(); });
        const miscounted = m.clusters.clusters.filter((c) => c.counts.reduce((a, b) => a + b, 0) !== c.count);
        return { clusters: m.clusters.clusters.length, singles: m.clusters.singles.length,
                 miscounted: miscounted.length,
                 total: m.clusters.clusters.reduce((n, c) => n + c.count, 0) + m.clusters.singles.length }; }"""
    await page.wait_for_function("window.locstreamMap.clusters.answers > 0")
    by_zoom = {zoom: await page.evaluate(counted, zoom) for zoom in (8, 11, 13, 17)}
    assert all(figure["total"] == 403 for figure in by_zoom.values()), by_zoom  # every technician, once
    assert all(figure["miscounted"] == 0 for figure in by_zoom.values()), by_zoom  # statuses add up to the count
    assert by_zoom[8]["clusters"] <= 2, by_zoom  # one crowd at a glance (Berlin's one is alone)
    assert by_zoom[8]["clusters"] < by_zoom[11]["clusters"] < by_zoom[13]["clusters"] + by_zoom[13]["singles"]
    assert by_zoom[17]["clusters"] == 0, by_zoom  # past the clustering zoom, everyone alone
    await page.evaluate("void window.locstreamMap.map.setView([6.5, 3.37], 11, {animate: false})")
    await page.wait_for_function(
        "window.locstreamMap.clusters.view.zoom === 11 && window.locstreamMap.clusters.clusters.length > 1"
    )
    await page.wait_for_function("window.locstreamMap.layer.frames > 0")
    target = await page.evaluate(
        """(() => { const m = window.locstreamMap, c = m.clusters.clusters.find((c) => c.count > 4);
                    const p = m.map.latLngToContainerPoint([c.lat, c.lng]);
                    const box = m.map.getContainer().getBoundingClientRect();
                    return { x: box.left + p.x, y: box.top + p.y, expand: c.expand, count: c.count }; })()"""
    )
    await _shot(page, "clusters")
    await page.mouse.click(target["x"], target["y"])
    await page.wait_for_function(f"window.locstreamMap.map.getZoom() === {target['expand']}")
    assert target["expand"] > 11


async def test_a_trail_matches_the_history_and_grows_live_and_a_backfilled_fix_jumps(
    stack: Stack, browser: Browser
) -> None:
    fleet = await _fleet(stack)
    start = datetime.now(UTC) - timedelta(minutes=10)
    for step in range(6):  # a winding drive through Berlin's west, a fix a minute
        at = (start + timedelta(minutes=step)).isoformat()
        lat, lon = 52.50 + step * 0.004 + (0.003 if step % 2 else 0.0), 13.28 + step * 0.009
        await fleet.post("tech-trail", lat, lon, recorded_at=at, speed_kmh=30.0, heading=60.0)
    await fleet.name("tech-trail", "Tunde Trail", "en_route")
    page = await _open_map(browser, fleet, technicians=4)
    await page.select_option("#trails", "15")
    await page.fill("#search", "tunde")
    await page.keyboard.press("Enter")
    await page.wait_for_function("window.locstreamMap.trails.loaded.has('tech-trail')")
    trail = await page.evaluate(
        "window.locstreamMap.trails.points('tech-trail', Date.now()).map((p) => [p.lat, p.lng, p.t])"
    )
    async with httpx.AsyncClient(timeout=10) as client:
        history = (
            await client.get(
                f"{fleet.projector.url}{API}/technicians/tech-trail/location-history",
                params={"start_time": (datetime.now(UTC) - timedelta(minutes=15)).isoformat()},
                headers={"Authorization": f"Bearer {stack.token(TENANT)}"},
            )
        ).json()["locations"]
    expected = [
        [p["latitude"], p["longitude"], int(datetime.fromisoformat(p["recorded_at"]).timestamp() * 1000)]
        for p in reversed(history)
    ]
    assert len(expected) == 6 and trail == expected
    await page.evaluate(
        # void: fitBounds returns the map, which Playwright would serialise with every layer (20 CPU-s here)
        "(t) => void window.locstreamMap.map.fitBounds("
        "t.map((p) => [p[0], p[1]]), {padding: [80, 80], animate: false})",
        trail,
    )
    await _shot(page, "trail")

    later = (start + timedelta(minutes=8)).isoformat()  # 3 min after the last: a glide of the longest (10 s)
    await fleet.post("tech-trail", 52.532, 13.34, recorded_at=later)
    await page.wait_for_function(fix_at("tech-trail", 52.532, 13.34))
    assert not await page.evaluate(fix_at("tech-trail", 52.532, 13.34, drawn=True)), "a live fix glides"
    await page.wait_for_function("window.locstreamMap.trails.points('tech-trail', Date.now()).length === 7")
    backfilled = (start + timedelta(minutes=9)).isoformat()
    await fleet.post("tech-trail", 52.536, 13.35, recorded_at=backfilled, backfill=True)
    await page.wait_for_function(fix_at("tech-trail", 52.536, 13.35))
    assert await page.evaluate(fix_at("tech-trail", 52.536, 13.35, drawn=True)), (
        "a backfilled fix is drawn where it is at once"
    )
    assert await page.evaluate("window.locstreamMap.trails.points('tech-trail', Date.now()).length") == 8


async def test_follow_keeps_the_technician_in_view_through_20_updates_until_the_user_pans(
    stack: Stack, browser: Browser
) -> None:
    fleet = await _fleet(stack)
    # Glides of at most half a second (10 s by default): each of the 20 steps waits for its marker to arrive.
    page = await _open_map(browser, fleet, query="glide_max_ms=500")
    await page.evaluate("window.locstreamMap.select('tech-ada')")
    await page.click("#follow")
    assert await page.get_attribute("#follow", "aria-pressed") == "true"
    lat, lon = LAGOS["tech-ada"]
    for step in range(1, 21):  # 20 fixes 12 s apart, each ~550 m further east: a hundred pixels or more at the zoom
        east, at = lon + step * 0.005, fleet.started + timedelta(seconds=12 * step)  # it opened at
        await fleet.post("tech-ada", lat, east, recorded_at=at.isoformat())
        await page.wait_for_function(fix_at("tech-ada", lat, east))
        await page.wait_for_function(fix_at("tech-ada", lat, east, drawn=True), timeout=15_000)
        assert await page.evaluate(_in_view("tech-ada")), f"out of view after update {step}"
    assert await page.evaluate("window.locstreamMap.following") == "tech-ada"
    assert await page.evaluate("(p) => window.locstreamMap.map.getBounds().contains(p)", [lat, lon]) is False
    box = await page.locator("#map").bounding_box()
    assert box is not None
    await page.mouse.move(box["x"] + 300, box["y"] + 300)
    await page.mouse.down()
    await page.mouse.move(box["x"] + 500, box["y"] + 350, steps=5)
    await page.mouse.up()
    assert await page.evaluate("window.locstreamMap.following") is None
    assert await page.get_attribute("#follow", "aria-pressed") == "false"


async def test_search_finds_by_name_and_the_panel_shows_the_details_and_exports(stack: Stack, browser: Browser) -> None:
    fleet = await _fleet(stack)
    await fleet.post(
        "tech-bola", 6.451, 3.401, speed_kmh=42.5, heading=90.0, accuracy_meters=6.0, metadata={"battery_percent": 77}
    )
    hostile = '<img src=x onerror="window.pwned=1">'  # names are the tenant's data: text, never markup
    await fleet.name("tech-dora", hostile, "en_route")
    page = await _open_map(browser, fleet, Role.ANALYST)
    await page.fill("#search", "<img")
    assert await page.locator("#search-results [role=option]").all_inner_texts() == [
        f"{hostile} (tech-dora) · en_route"
    ]
    await page.evaluate("window.locstreamMap.select('tech-dora')")
    assert await page.text_content("#details-title") == hostile
    assert await page.evaluate(
        "window.pwned === undefined && !document.querySelector('#details img, #search-results img')"
    )
    await page.fill("#search", "bola")
    options = await page.locator("#search-results [role=option]").all_inner_texts()
    assert options == ["Bola Ade (tech-bola) · available"]
    await page.keyboard.press("Enter")
    await page.wait_for_function("!document.getElementById('details').hidden")
    rows = await page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('#details-rows dt')].map((dt) => [dt.textContent,"
        " dt.nextElementSibling.textContent]))"
    )
    assert rows["Name"] == "Bola Ade" and rows["Status"] == "available"
    assert rows["Speed"] == "42.5 km/h" and rows["Heading"] == "90° E" and rows["Accuracy"] == "± 6 m"
    assert rows["Battery"] == "77 %" and rows["Last fix"].endswith(")")
    assert await page.evaluate("window.locstreamMap.selected") == "tech-bola"
    async with page.expect_download() as download:
        await page.click("#details-links a:has-text('GPX')")
    saved = await (await download.value).path()
    gpx = saved.read_text()
    assert "<gpx" in gpx and "tech-bola" in gpx and 'lat="6.451"' in gpx
    await _shot(page, "details")
    dispatcher = await _open_map(browser, fleet, Role.DISPATCHER)  # may not export: the panel says why
    await dispatcher.evaluate("window.locstreamMap.select('tech-bola')")
    await dispatcher.click("#details-links a:has-text('CSV')")
    await dispatcher.wait_for_function("document.getElementById('details-status').textContent.includes('HTTP 403')")


async def test_status_chips_send_a_subscribe_and_change_what_arrives(stack: Stack, browser: Browser) -> None:
    fleet = await _fleet(stack)
    page = await browser.new_page(viewport={"width": 1200, "height": 800})
    sent: list[str] = []

    def watch(socket: WebSocket) -> None:
        socket.on("framesent", lambda payload: sent.append(payload if isinstance(payload, str) else payload.decode()))

    page.on("websocket", watch)
    await page.goto(f"{fleet.page_edge.url}/map?{QUICK}")
    await page.fill("#token", fleet.stack.token(TENANT, Role.DISPATCHER, ttl=3600))
    await page.click("#login button[type=submit]")
    await _mode(page, "live")
    await page.wait_for_function("window.locstreamMap.fleet.size === 3")
    await page.click("#chips [data-status=on_job]")  # Ada is on a job: she goes
    assert await page.get_attribute("#chips [data-status=on_job]", "aria-pressed") == "false"
    await page.wait_for_function("window.locstreamMap.fleet.size === 2")
    subscribes = [frame for frame in sent if '"subscribe"' in frame]
    assert subscribes and '"status":["available","en_route","break","offline"]' in subscribes[-1], subscribes
    await fleet.post("tech-ada", 6.53, 3.38)  # not what the chips ask for: it does not arrive
    await fleet.post("tech-bola", 6.46, 3.41)
    await page.wait_for_function(fix_at("tech-bola", 6.46, 3.41))
    assert await page.evaluate("!window.locstreamMap.fleet.tracks.has('tech-ada')")
    await page.click("#chips [data-status=on_job]")
    await page.wait_for_function(fix_at("tech-ada", 6.53, 3.38))
    assert '"status"' not in sent[-1] or "on_job" in sent[-1]


async def test_everything_works_by_keyboard_and_the_badge_is_announced(stack: Stack, browser: Browser) -> None:
    fleet = await _fleet(stack)
    page = await _open_map(browser, fleet)
    assert await page.get_attribute("#badge", "aria-live") == "polite"
    assert await page.get_attribute("#badge", "role") == "status"
    await page.focus("#search")
    await page.keyboard.type("dora")
    await page.keyboard.press("Enter")
    await page.wait_for_function("window.locstreamMap.selected === 'tech-dora'")
    await page.focus("#follow")
    await page.keyboard.press("Enter")
    assert await page.get_attribute("#follow", "aria-pressed") == "true"
    await page.keyboard.press("Escape")
    assert await page.evaluate("document.getElementById('details').hidden")
    await page.focus("#chips [data-status=en_route]")
    await page.keyboard.press("Space")
    await page.wait_for_function("window.locstreamMap.fleet.size === 2")  # Dora is en route
    await page.keyboard.press("Space")
    await page.wait_for_function("window.locstreamMap.fleet.size === 3")
    await page.focus("#trails")
    await page.keyboard.press("ArrowDown")
    assert await page.evaluate("window.locstreamMap.trails.minutes") == 5
    await page.evaluate("void window.locstreamMap.map.setView([6.5244, 3.3792], 13, {animate: false})")
    await page.focus("#map")
    zoom = await page.evaluate("window.locstreamMap.map.getZoom()")
    await page.keyboard.press("Equal")  # "+": Leaflet's keyboard zoom
    await page.wait_for_function(f"window.locstreamMap.map.getZoom() > {zoom}")
    await page.wait_for_function(f"window.locstreamMap.clusters.view.zoom > {zoom}")
    await page.wait_for_function(
        "window.locstreamMap.layer.frames > 0 && window.locstreamMap.clusters.singles.length > 0"
    )
    await page.keyboard.press("Enter")  # opens what is nearest the centre: Ada
    await page.wait_for_function("window.locstreamMap.selected === 'tech-ada'")


async def test_a_stopped_technician_says_so_with_its_day_and_an_offline_one_greys_out_behind_a_chip(
    stack: Stack, browser: Browser
) -> None:
    """Stops and presence on the map come from the derived-facts processor's events (the edge keeps no clock of its
    own): a technician parked 8 minutes says "stopped", lists today's stop and shows it on its trail; silent past the
    tenant's threshold (10 s here), every marker greys out and the presence chip hides them; a fresh fix brings one
    back."""
    fleet = await _fleet(stack)
    admin = {"Authorization": f"Bearer {stack.token(TENANT, Role.ADMIN)}"}
    async with httpx.AsyncClient(timeout=10) as http:
        rules = {"presence": {"offline_seconds": 10}}
        assert (await http.put(f"{fleet.api.url}{API}/rules", json=rules, headers=admin)).status_code == 200
    # It reads the rules topic from its beginning before any fix, and here the location topic too (the fleet's
    # first fixes came before it started).
    await stack.start("geofencer", env={"LOCSTREAM_GEOFENCER_START_FROM": "beginning"})
    page = await _open_map(browser, fleet)
    now = datetime.now(UTC).replace(microsecond=0)
    trace = parked(random.Random(7), now - timedelta(minutes=8), 6.47, 3.36, 8 * 60, every=15)
    fixes = [
        {
            "event_id": str(uuid.uuid4()),
            "technician_id": "tech-cara",
            "recorded_at": p.at.isoformat(),
            "latitude": p.latitude,
            "longitude": p.longitude,
            "accuracy_meters": p.accuracy_meters,
        }
        for p in trace
    ]
    phone = {"Authorization": f"Bearer {stack.token(TENANT, Role.DEVICE_GATEWAY)}"}
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(f"{fleet.api.url}{API}/locations/batch", json={"fixes": fixes}, headers=phone)
        assert answer.status_code == 202, answer.text
    cara = "window.locstreamMap.fleet.tracks.get('tech-cara')?.location"
    await page.wait_for_function(f"{cara}?.motion === 'stopped'", timeout=30_000)
    since = await page.evaluate(f"{cara}.motion_since")
    assert datetime.fromisoformat(since) == trace[0].at  # the stop began at its first fix
    await page.evaluate("window.locstreamMap.select('tech-cara')")
    rows = await page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('#details-rows dt')].map((dt) => [dt.textContent,"
        " dt.nextElementSibling.textContent]))"
    )
    assert rows["Activity"].startswith("Stopped 8 min") or rows["Activity"].startswith("Stopped 9 min"), rows
    if (now - timedelta(minutes=8)).date() == now.date():  # local midnight (UTC here) did not fall within the trace
        await page.wait_for_function("document.querySelectorAll('#details-day li.stop').length === 1")
        assert "Stopped" in await page.text_content("#details-day li.stop")  # type: ignore[operator]
        assert await page.evaluate("window.locstreamMap.layer.stops.length") == 1  # drawn on its trail
    await _shot(page, "stopped")

    # Silent past the threshold: the processor says offline, every map greys the markers out.
    await page.wait_for_function(f"{cara}?.stale === true", timeout=60_000)
    offline_since = await page.evaluate(f"{cara}.offline_since")
    assert datetime.fromisoformat(offline_since) == trace[-1].at  # its last fix
    await page.wait_for_function("document.querySelector('#chips [data-presence=offline]').textContent.endsWith(' 4')")
    rows = await page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('#details-rows dt')].map((dt) => [dt.textContent,"
        " dt.nextElementSibling.textContent]))"
    )
    assert "(offline since " in rows["Status"], rows
    await _shot(page, "offline")
    await page.click("#chips [data-presence=offline]")  # released: only those online
    await page.wait_for_function("window.locstreamMap.fleet.size === 0")
    await fleet.post("tech-bola", 6.4505, 3.4005)  # heard from again: online, back on the map
    await page.wait_for_function(
        "window.locstreamMap.fleet.size === 1 && window.locstreamMap.fleet.tracks.has('tech-bola')"
    )
    bola = await page.evaluate("window.locstreamMap.fleet.tracks.get('tech-bola').location")
    assert bola["stale"] is False

    # A map opened now bootstraps the same from the projector's table: the edge restarts and says the same.
    await fleet.restart_feed()
    again = await _open_map(browser, fleet, technicians=4)
    await again.wait_for_function(f"{cara}?.stale === true && {cara}?.motion === 'stopped'")

    async def bola_online() -> bool:
        return bool(await again.evaluate("window.locstreamMap.fleet.tracks.get('tech-bola').location.stale === false"))

    await eventually(bola_online, timeout=10, what="tech-bola online on a map opened after the restart")
