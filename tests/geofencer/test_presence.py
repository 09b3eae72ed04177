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
from schemas.events import TechnicianOffline, TechnicianOnline
from tests.support.kafka_io import read_all
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

        # A processor killed with SIGKILL just after tech-b's and tech-c's fixes, and kept down three thresholds long
        # with no fix arriving (as when the broker is out of reach: the phones cannot post either).
        await post(http, "tech-b")
        await post(http, "tech-c")
        await eventually(
            lambda: _read_past_fixes(processor, 2 + sent["tech-a"]), timeout=30, what="the processor to read them"
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


async def _read_past_fixes(service: Service, count: int) -> bool:
    """Whether the processor has evaluated ``count`` fixes (its metric)."""
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(f"{service.url}/metrics", headers=service.admin_headers)).text
    lines = [line for line in text.splitlines() if line.startswith("locstream_geofencer_fixes_total ")]
    return bool(lines) and float(lines[0].split()[1]) >= count
