"""Bad fixes through the real services (ingest API, projector, edge, geofence processor as processes, a real broker):
a phone's jump is accepted (202) and kept in the history, flagged, but never reaches a map, not for one frame, and a
fence it would have entered stays quiet; fixes flagged by themselves ((0, 0), a mock location) likewise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from schemas.claims import Role
from tests.support.maps import open_map, recv_json
from tests.support.stack import Stack, eventually
from tests.support.traces import offset

pytestmark = pytest.mark.integration

PREFIX = "/api/v1/field-service"
ORIGIN = (6.5244, 3.3792)
TENANT = "quality-fleet"


async def test_a_jump_never_reaches_a_map_is_kept_flagged_and_enters_no_fence(stack: Stack) -> None:
    projector = await stack.start("projector")
    api = await stack.start("producers")
    edge = await stack.start("ws-edge")
    await stack.start("geofencer")
    site, depot = offset(*ORIGIN, 1_000, 0), offset(*ORIGIN, 0, 300)
    dispatcher = {"Authorization": f"Bearer {stack.token(TENANT, Role.DISPATCHER)}"}
    phone = {"Authorization": f"Bearer {stack.token(TENANT, Role.DEVICE_GATEWAY)}"}
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    fixes: list[tuple[str, tuple[float, float], datetime]] = [
        ("start", ORIGIN, t0),
        ("spike", site, t0 + timedelta(seconds=5)),  # 1 km in 5 s: 720 km/h, into the site's fence
        ("back", offset(*ORIGIN, 5, 0), t0 + timedelta(seconds=10)),
        ("zero", (0.0, 0.0), t0 + timedelta(seconds=15)),
        ("at the depot", depot, t0 + timedelta(seconds=70)),  # 300 m in a minute: walking into the depot's fence
    ]
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as http:
        for fence_id, (lat, lon) in (("site", site), ("depot", depot)):
            body = {"latitude": lat, "longitude": lon, "radius_meters": 60, "name": fence_id}
            assert (await http.put(f"{PREFIX}/geofences/{fence_id}", json=body, headers=dispatcher)).status_code == 200
        ws, initial = await open_map(edge, stack.token(TENANT))
        assert initial["type"] == "initial_state" and initial["data"] == []
        ids = {}
        for name, (lat, lon), at in fixes:
            answer = await http.post(
                f"{PREFIX}/technicians/tech-q/location",
                json={"latitude": lat, "longitude": lon, "recorded_at": at.isoformat(), "accuracy_meters": 8},
                headers=phone,
            )
            assert answer.status_code == 202, (name, answer.text)  # flagged or not, a phone must not retry it
            ids[name] = answer.json()["event_id"]

        # Every frame until the depot's arrival (the geofence processor reads the partition in order: by then it has
        # judged the spike): positions only of good fixes, and no arrival at the site.
        frames: list[dict[str, Any]] = []
        while not any(f["type"] == "geofence_event" and f["data"]["geofence_id"] == "depot" for f in frames):
            frames.append(await recv_json(ws, timeout=30))
        shown = [(f["data"]["latitude"], f["data"]["longitude"]) for f in frames if f["type"] == "location_update"] + [
            (d["latitude"], d["longitude"]) for f in frames if f["type"] == "location_batch" for d in f["data"]
        ]
        assert shown == [ORIGIN, offset(*ORIGIN, 5, 0), depot], shown
        arrivals = [f["data"]["geofence_id"] for f in frames if f["type"] == "geofence_event"]
        assert arrivals == ["depot"], arrivals

        history = f"{projector.url}{PREFIX}/technicians/tech-q/location-history"

        async def flagged_listed() -> list[dict[str, Any]] | None:
            answer = await http.get(history, params={"quality": "flagged"}, headers=dispatcher)
            found: list[dict[str, Any]] = answer.json()["locations"] if answer.status_code == 200 else []
            return found if len(found) == 2 else None

        flagged = await eventually(flagged_listed, timeout=20, what="the flagged fixes in the history")
        assert {(p["event_id"], tuple(p["quality"])) for p in flagged} == {
            (ids["spike"], ("jump",)),
            (ids["zero"], ("zero", "jump")),  # every reason: (0, 0) is 700 km from where it was too
        }
        good = (await http.get(history, headers=dispatcher)).json()["locations"]  # the default: good only
        assert [p["event_id"] for p in good] == [ids["at the depot"], ids["back"], ids["start"]]
        assert all(p["quality"] == [] for p in good)
        every = (await http.get(history, params={"quality": "all"}, headers=dispatcher)).json()["locations"]
        assert len(every) == 5
        odd = await http.get(history, params={"quality": "bad"}, headers=dispatcher)
        assert odd.status_code == 422 and "quality" in odd.text
    snapshot = await stack.snapshot()
    (state,) = [s for s in snapshot.states if s.tenant_id == TENANT]
    assert state.fix is not None and (state.fix.latitude, state.fix.longitude) == depot
