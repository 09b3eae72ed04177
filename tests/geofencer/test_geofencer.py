"""The geofence processor under the real services: fences defined through the API, fixes posted by a technician,
crossings on the topic and on the maps of the fence's tenant only."""

from __future__ import annotations

import asyncio
import math
import signal
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from domain.geofencing import EARTH_RADIUS_M
from schemas.claims import Role
from schemas.events import GeofenceEntered, GeofenceExited
from tests.support.kafka_io import read_all
from tests.support.maps import open_map, recv_json
from tests.support.processors import metric
from tests.support.stack import Service, Stack, eventually

pytestmark = pytest.mark.integration

PREFIX = "/api/v1/field-service"
SITE = (6.5244, 3.3792)


def north_of(metres: float) -> tuple[float, float]:
    return SITE[0] + metres / (math.pi / 180 * EARTH_RADIUS_M), SITE[1]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _post(api: Service, token: str, technician: str, metres: float, at: datetime) -> None:
    latitude, longitude = north_of(metres)
    fix = {"event_id": str(uuid.uuid4()), "technician_id": technician, "recorded_at": at.isoformat()}
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.post(
            f"{api.url}{PREFIX}/locations/batch",
            json={"fixes": [{**fix, "latitude": latitude, "longitude": longitude, "accuracy_meters": 5}]},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert answer.status_code == 202, answer.text


async def test_jitter_across_the_edge_gives_one_enter_and_one_exit_on_the_tenants_maps_only(stack: Stack) -> None:
    api = await stack.start("producers")
    edge = await stack.start("ws-edge")
    geofencer = await stack.start("geofencer")
    projector = await stack.start("projector")
    dispatcher = stack.token("tenant-a", Role.DISPATCHER)
    fence = {"latitude": SITE[0], "longitude": SITE[1], "radius_meters": 100, "name": "Cabinet 12", "job_id": "job-12"}
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        put = await http.put(
            f"{PREFIX}/geofences/cabinet-12", json=fence, headers={"Authorization": f"Bearer {dispatcher}"}
        )
        assert put.status_code == 200, put.text
        listed = await http.get(f"{PREFIX}/geofences", headers={"Authorization": f"Bearer {dispatcher}"})
        assert [f["geofence_id"] for f in listed.json()] == ["cabinet-12"]
        other = await http.get(f"{PREFIX}/geofences", headers={"Authorization": f"Bearer {stack.token('tenant-b')}"})
        assert other.json() == []
    ours, _ = await open_map(edge, dispatcher)
    theirs, _ = await open_map(edge, stack.token("tenant-b"))
    drawn = await recv_json(ours)  # the tenant's fences follow the initial state
    assert drawn["type"] == "geofence_updated" and drawn["data"]["geometry"]["radius_meters"] == 100

    async def fence_loaded() -> bool:  # the processor has read the fence (it follows the topic)
        async with httpx.AsyncClient(timeout=10) as http:
            return (await http.get(f"{geofencer.url}/readyz")).status_code == 200

    await eventually(fence_loaded, timeout=30, what="the geofencer to be ready")
    technician = stack.token("tenant-a", Role.TECHNICIAN, sub="ada")
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    for second, metres in enumerate([105, 60, 20, 95, 110, 30, 400]):
        await _post(api, technician, "ada", metres, t0 + timedelta(seconds=second * 10))

    async def all_evaluated() -> bool:
        return await metric(geofencer, "locstream_geofencer_fixes_total") >= 7

    await eventually(all_evaluated, timeout=30, what="the geofencer to evaluate the 7 fixes")
    await _post(api, stack.token("tenant-b", Role.TECHNICIAN, sub="bo"), "bo", 10, t0)  # a marker on tenant-b's map
    await _post(
        api, technician, "ada", 5_000, t0 + timedelta(minutes=4)
    )  # a marker after the crossings, same partition (4.6 km in 3 minutes: no jump)
    seen: list[dict[str, Any]] = []
    while True:
        frame = await recv_json(ours, 30)
        if frame["type"] == "geofence_event":
            seen.append(frame["data"])
        elif frame["type"] == "location_update" and frame["data"]["latitude"] == pytest.approx(north_of(5_000)[0]):
            break
    assert [(e["event_type"], e["geofence_id"], e["job_id"]) for e in seen] == [
        ("enter", "cabinet-12", "job-12"),
        ("exit", "cabinet-12", "job-12"),
    ]
    assert round(seen[0]["distance_meters"]) == 60 and round(seen[1]["distance_meters"]) == 400
    assert seen[0]["message"] == "ada arrived at Cabinet 12" and seen[0]["technician_name"] == "ada"
    assert seen[0]["timestamp"] == (t0 + timedelta(seconds=10)).isoformat()
    while True:  # tenant-b's map: its own marker, and no crossing of tenant-a's
        frame = await recv_json(theirs, 30)
        assert frame["type"] != "geofence_event", frame
        if frame["type"] == "location_update":
            break
    crossings = [e for e, _ in await read_all(stack.kafka) if isinstance(e, GeofenceEntered | GeofenceExited)]
    assert [type(e).__name__ for e in crossings] == ["GeofenceEntered", "GeofenceExited"]
    on_site = (crossings[1].recorded_at - crossings[0].recorded_at).total_seconds()
    assert on_site == 50  # entered at the 60 m fix (t0 + 10 s), left at the 400 m one (t0 + 60 s)
    async with httpx.AsyncClient(base_url=projector.url, timeout=10) as http:

        async def time_on_site() -> dict[str, Any] | None:
            answer = await http.get(f"{PREFIX}/geofence/job-time-on-site/job-12", headers=_bearer(dispatcher))
            body: dict[str, Any] = answer.json()
            return body if body["time_on_site_seconds"] is not None else None

        body = await eventually(time_on_site, timeout=30, what="the projector to record the visit")
        assert body == {"job_id": "job-12", "time_on_site_seconds": 50.0, "time_on_site_formatted": "0m 50s"}
        before = await http.get(f"{PREFIX}/geofence/job-time-on-site/job-13", headers=_bearer(dispatcher))
        assert before.json() == {"job_id": "job-13", "time_on_site_seconds": None, "time_on_site_formatted": None}
        other = await http.get(f"{PREFIX}/geofence/job-time-on-site/job-12", headers=_bearer(stack.token("tenant-b")))
        assert other.json()["time_on_site_seconds"] is None  # another tenant's job of the same id: nothing
    await ours.close()
    await theirs.close()


async def test_nearby_jobs_are_ordered_by_distance_and_flag_the_assigned_one(stack: Stack) -> None:
    api = await stack.start("producers")
    projector = await stack.start("projector")
    dispatcher = _bearer(stack.token("tenant-a", Role.DISPATCHER))
    jobs = {"job-far": 900, "job-near": 150, "job-mine": 400, "job-out": 3_000}
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        for job, metres in jobs.items():
            latitude, longitude = north_of(metres)
            fence: dict[str, object] = {
                "latitude": latitude,
                "longitude": longitude,
                "job_id": job,
                "title": f"Title {job}",
                "status": "open",
            }
            if job == "job-mine":
                fence["assigned_technician_id"] = "ada"
            assert (await http.put(f"{PREFIX}/geofences/{job}", json=fence, headers=dispatcher)).status_code == 200
        refused = await http.put(
            f"{PREFIX}/geofences/x",
            json={"latitude": 1, "longitude": 1},
            headers=_bearer(stack.token("tenant-a", Role.TECHNICIAN, sub="ada")),
        )
        assert refused.status_code == 403
    await _post(api, stack.token("tenant-a", Role.TECHNICIAN, sub="ada"), "ada", 0, datetime.now(UTC))
    async with httpx.AsyncClient(base_url=projector.url, timeout=10) as http:

        async def nearby() -> dict[str, Any] | None:
            answer = await http.get(
                f"{PREFIX}/geofence/nearby-jobs",
                params={"technician_id": "ada", "radius_meters": 1000},
                headers=dispatcher,
            )
            body: dict[str, Any] = answer.json()
            return body if body["current_location"] is not None and len(body["nearby_jobs"]) == 3 else None

        body = await eventually(nearby, timeout=30, what="the projector to know ada's position and the fences")
    assert [job["job_id"] for job in body["nearby_jobs"]] == ["job-near", "job-mine", "job-far"]
    assert [job["is_assigned_to_me"] for job in body["nearby_jobs"]] == [False, True, False]
    assert [round(job["distance_meters"]) for job in body["nearby_jobs"]] == [150, 400, 900]
    assert body["search_radius_meters"] == 1000 and body["nearby_jobs"][0]["title"] == "Title job-near"
    assert body["current_location"]["latitude"] == pytest.approx(SITE[0])


async def test_sigterm_stops_the_processor_cleanly_mid_stream(stack: Stack) -> None:
    api = await stack.start("producers")
    geofencer = await stack.start("geofencer")
    token = stack.token("tenant-a", Role.TECHNICIAN, sub="ada")
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    for second in range(20):
        await _post(api, token, "ada", second * 10.0, t0 + timedelta(seconds=second))
    geofencer.process.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(geofencer.process.wait, 15)
    assert code in (0, -signal.SIGTERM)  # uvicorn raises the signal again once it has shut down
    log = geofencer.log()
    assert "Finished server process" in log  # the lifespan ran to its end: the processor stopped, not killed
    assert "Traceback" not in log and " ERROR " not in log, log[-2_000:]
