"""Online and offline through the real services (ingest API, derived-facts processor and projector as processes, a
real broker), with a tenant whose admin set 10 s of silence as offline: a technician that stops posting is said
offline once, is online at its next fix, and the projector lists the period; a processor killed with SIGKILL and
kept down for longer than the threshold says nobody offline when it comes back until the technician has been
silent for the threshold in time it watched."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from domain.presence import CLOCK_STEP_CAP
from locstream.settings import KafkaSettings
from schemas.claims import Role
from schemas.events import TechnicianOffline, TechnicianOnline, TrackingStopped
from tests.support.kafka_io import read_all
from tests.support.maps import open_map, updates_until
from tests.support.processors import metric
from tests.support.stack import Service, Stack, eventually
from tests.support.traces import offset

pytestmark = pytest.mark.integration

PREFIX = "/api/v1/field-service"
TENANT = "presence-fleet"
DEPOT = (6.5244, 3.3792)
OFFLINE_SECONDS = 10.0


async def _presence(kafka: KafkaSettings, technician: str) -> list[TechnicianOffline | TechnicianOnline]:
    return [
        event
        for event, _ in await read_all(kafka)
        if isinstance(event, TechnicianOffline | TechnicianOnline) and event.technician_id == technician
    ]


async def test_silence_is_offline_once_the_next_fix_online_and_a_restart_makes_no_false_offline(
    stack: Stack, kafka: KafkaSettings
) -> None:
    api = await stack.start("producers")
    projector = await stack.start("projector")
    admin = {"Authorization": f"Bearer {stack.token(TENANT, Role.ADMIN)}"}
    phone = {"Authorization": f"Bearer {stack.token(TENANT, Role.DEVICE_GATEWAY)}"}
    sent: dict[str, int] = {}

    async def post(http: httpx.AsyncClient, technician: str) -> str:
        sent[technician] = sent.get(technician, 0) + 1
        place = offset(*DEPOT, 10 * sent[technician], 0)
        body = {"latitude": place[0], "longitude": place[1], "accuracy_meters": 5, "event_id": str(uuid.uuid4())}
        answer = await http.post(f"{api.url}{PREFIX}/technicians/{technician}/location", json=body, headers=phone)
        assert answer.status_code == 202, answer.text
        return str(answer.json()["event_id"])

    async with httpx.AsyncClient(timeout=10) as http:
        rules = {"presence": {"offline_seconds": OFFLINE_SECONDS}}
        assert (await http.put(f"{api.url}{PREFIX}/rules", json=rules, headers=admin)).status_code == 200
        processor = await stack.start("geofencer")  # reads the rules topic from its beginning before any fix
        first = await post(http, "tech-a")
        said_at = time.time()

        async def offline() -> list[TechnicianOffline | TechnicianOnline] | None:
            found = await _presence(kafka, "tech-a")
            return found if found else None

        (gone,) = await eventually(offline, timeout=60, what="tech-a said offline")
        assert isinstance(gone, TechnicianOffline) and str(gone.data.fix_event_id) == first
        assert gone.data.silent_seconds >= OFFLINE_SECONDS
        assert gone.received_at.timestamp() >= said_at + OFFLINE_SECONDS - 1  # not before 10 s of silence

        back = await post(http, "tech-a")

        async def online() -> list[TechnicianOffline | TechnicianOnline] | None:
            found = await _presence(kafka, "tech-a")
            return found if len(found) >= 2 else None

        came = (await eventually(online, timeout=30, what="tech-a online again"))[1]
        assert isinstance(came, TechnicianOnline) and str(came.data.fix_event_id) == back
        assert came.data.last_seen_at == gone.data.last_seen_at

        window = {
            "start_time": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
            "end_time": (datetime.now(UTC) + timedelta(minutes=1)).isoformat(),
        }
        dispatcher = {"Authorization": f"Bearer {stack.token(TENANT, Role.DISPATCHER)}"}

        async def listed() -> list[dict[str, Any]] | None:
            answer = await http.get(f"{projector.url}{PREFIX}/reports/offline", params=window, headers=dispatcher)
            rows: list[dict[str, Any]] = answer.json()["offline"] if answer.status_code == 200 else []
            return rows if rows and rows[0]["back_at"] is not None else None

        (period,) = await eventually(listed, timeout=30, what="the offline period in the report")
        assert period["technician_id"] == "tech-a"
        assert datetime.fromisoformat(period["back_at"]) == came.data.back_at
        # Its end keeps what its start said (the row holds the online event now).
        assert period["silent_seconds"] == gone.data.silent_seconds and period["reason"] == "silent"

        # A processor killed with SIGKILL just after tech-b's and tech-c's fixes, and kept down three thresholds long
        # with no fix arriving (as when the broker is out of reach: the phones cannot post either).
        await post(http, "tech-b")
        await post(http, "tech-c")
        await eventually(
            lambda: _fixes_read(processor, 2 + sent["tech-a"]), timeout=30, what="the processor to read them"
        )
        processor.kill9()
        await asyncio.sleep(3 * OFFLINE_SECONDS)  # the outage itself: what is under test is what follows it
        await stack.start("geofencer")
        restarted = time.time()

        async def both_offline() -> list[TechnicianOffline | TechnicianOnline] | None:
            found = [*await _presence(kafka, "tech-b"), *await _presence(kafka, "tech-c")]
            return found if len(found) >= 2 else None

        # The 30 s nobody watched count as one capped step (5 s): each gets the rest of its 10 s after the restart,
        # where counting the outage would have said both offline at once.
        assert CLOCK_STEP_CAP <= OFFLINE_SECONDS / 2
        for event in await eventually(both_offline, timeout=60, what="tech-b and tech-c said offline"):
            assert isinstance(event, TechnicianOffline)
            assert event.received_at.timestamp() >= restarted + OFFLINE_SECONDS / 2 - 1, event

        # Each said once in effect: a repeat after the kill carries the same id and the same content, and each silence
        # (known by the fix before it) is said once.
        for technician in ("tech-a", "tech-b", "tech-c"):
            first_seen: dict[uuid.UUID, TechnicianOffline | TechnicianOnline] = {}
            for event in await _presence(kafka, technician):
                assert first_seen.setdefault(event.event_id, event) == event, technician
            silences = [e.data.fix_event_id for e in first_seen.values() if isinstance(e, TechnicianOffline)]
            assert len(silences) == len(set(silences)), technician


async def test_an_app_that_says_it_stopped_is_offline_at_once_on_the_map_and_in_the_report_until_its_next_fix(
    stack: Stack, kafka: KafkaSettings
) -> None:
    """Overland's paused_location_updates, through its own endpoint: tracking_stopped on the topic at once, the map's
    marker offline with that reason well before any threshold (the tenant's is the default 10 minutes), the
    processor's offline period with that reason in the report, and the phone's next fix ending both."""
    api = await stack.start("producers")
    projector = await stack.start("projector")
    edge = await stack.start("ws-edge")
    await stack.start("geofencer")
    admin = {"Authorization": f"Bearer {stack.token(TENANT, Role.ADMIN)}"}
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(
            f"{api.url}{PREFIX}/devices", json={"technician_id": "tech-o", "label": "iPhone"}, headers=admin
        )
        assert answer.status_code == 201, answer.text
        phone = {"Authorization": f"Bearer {answer.json()['key']}"}
        overland = f"{api.url}/api/v1/ingest/overland"
        now = datetime.now(UTC).replace(microsecond=0)

        def feature(at: datetime, **properties: Any) -> dict[str, Any]:
            point = {"type": "Point", "coordinates": [DEPOT[1], DEPOT[0]]}
            return {"type": "Feature", "geometry": point, "properties": {"timestamp": at.isoformat(), **properties}}

        first = await http.post(overland, json={"locations": [feature(now - timedelta(seconds=20))]}, headers=phone)
        assert first.json() == {"result": "ok"}
        ws, initial = await open_map(edge, stack.token(TENANT, Role.DISPATCHER))

        async def located() -> bool:
            return any(entry["technician_id"] == "tech-o" for entry in (await _locations(edge, stack)))

        await eventually(located, timeout=30, what="tech-o on the map")
        paused_at = now - timedelta(seconds=5)
        pause = {"locations": [feature(paused_at, action="paused_location_updates")]}
        said = time.monotonic()
        assert (await http.post(overland, json=pause, headers=phone)).json() == {"result": "ok"}
        (greyed,) = [
            u["data"]
            for u in await updates_until(ws, lambda got: any(u["data"].get("stale") for u in got))
            if u["data"].get("stale")
        ]
        took = time.monotonic() - said
        assert (greyed["offline_reason"], datetime.fromisoformat(greyed["offline_since"])) == (
            "tracking_stopped",
            paused_at,
        )
        assert took < 5, took  # at once: the threshold is 10 minutes

        window = {
            "start_time": (now - timedelta(hours=1)).isoformat(),
            "end_time": (now + timedelta(minutes=5)).isoformat(),
        }
        dispatcher = {"Authorization": f"Bearer {stack.token(TENANT, Role.DISPATCHER)}"}

        async def period(ended: bool) -> dict[str, Any] | None:
            answer = await http.get(f"{projector.url}{PREFIX}/reports/offline", params=window, headers=dispatcher)
            rows: list[dict[str, Any]] = answer.json()["offline"] if answer.status_code == 200 else []
            return rows[0] if rows and (rows[0]["back_at"] is not None) == ended else None

        stopped = await eventually(lambda: period(False), timeout=30, what="the stop in the offline report")
        assert stopped["reason"] == "tracking_stopped" and stopped["technician_id"] == "tech-o"
        assert datetime.fromisoformat(stopped["last_seen_at"]) == now - timedelta(seconds=20)  # known by its last fix

        resumed = await http.post(overland, json={"locations": [feature(datetime.now(UTC))]}, headers=phone)
        assert resumed.json() == {"result": "ok"}
        back = await updates_until(ws, lambda got: any(u["data"].get("stale") is False for u in got))
        assert back[-1]["data"]["stale"] is False and "offline_reason" not in back[-1]["data"]
        ended = await eventually(lambda: period(True), timeout=30, what="the stop's end in the offline report")
        assert ended["reason"] == "tracking_stopped"  # its end keeps what its start said
    stops = [e for e, _ in await read_all(kafka) if isinstance(e, TrackingStopped)]
    presence = await _presence(kafka, "tech-o")
    assert [s.data.reason for s in stops] == ["paused"]
    assert [type(e).__name__ for e in presence] == ["TechnicianOffline", "TechnicianOnline"]
    assert initial["type"] == "initial_state"


async def _locations(edge: Service, stack: Stack) -> list[dict[str, Any]]:
    token = stack.token(TENANT, Role.DISPATCHER)
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(
            f"{edge.url}{PREFIX}/technicians/locations/active", headers={"Authorization": f"Bearer {token}"}
        )
    found: list[dict[str, Any]] = answer.json() if answer.status_code == 200 else []
    return found


async def _fixes_read(service: Service, count: int) -> bool:
    """Whether the processor has evaluated ``count`` fixes (its metric)."""
    return await metric(service, "locstream_geofencer_fixes_total") >= count
