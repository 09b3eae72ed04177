"""Stops and trips through the real services (ingest API, derived-facts processor and projector as processes, a real
broker): a phone's day posted as batches, its drive held back and sent last like an offline phone's buffer, gives the
stops and trips the rule gives the sorted fixes; the reports list them as JSON and CSV, page by page, for the
token's tenant only, and refuse what they should."""

from __future__ import annotations

import csv
import io
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from domain.stays import Point, stays_of
from schemas.claims import Role
from schemas.tenant_rules import StayRules
from tests.support.stack import Stack, eventually
from tests.support.traces import TracePoint, drive, parked, recorded

pytestmark = pytest.mark.integration

PREFIX = "/api/v1/field-service"
DEPOT = (6.5244, 3.3792)
TENANT = "stays-fleet"


def _body(points: list[TracePoint], technician: str) -> dict[str, Any]:
    return {
        "fixes": [
            {
                "event_id": str(uuid.uuid4()),
                "technician_id": technician,
                "recorded_at": p.at.isoformat(),
                "latitude": p.latitude,
                "longitude": p.longitude,
                "accuracy_meters": p.accuracy_meters,
            }
            for p in points
        ]
    }


def _seconds(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


async def test_a_backfilled_day_gives_the_stops_and_trips_of_its_sorted_fixes_in_the_reports(stack: Stack) -> None:
    projector = await stack.start("projector")
    api = await stack.start("producers")
    await stack.start("geofencer")
    rng = random.Random(32)
    t0 = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0)
    first = parked(rng, t0, *DEPOT, 8 * 60)
    leg = drive(rng, first[-1].at + timedelta(seconds=5), *DEPOT, bearing_deg=45, kmh=40, seconds=240, every=2)
    last = leg[-1]
    second = parked(rng, last.at + timedelta(seconds=5), last.latitude, last.longitude, 8 * 60)
    phone = {"Authorization": f"Bearer {stack.token(TENANT, Role.DEVICE_GATEWAY)}"}
    dispatcher = {"Authorization": f"Bearer {stack.token(TENANT, Role.DISPATCHER)}"}
    async with httpx.AsyncClient(timeout=30) as http:
        # The drive was in a tunnel: its fixes come last, after both parkings'.
        for batch in (first, second, leg):
            answer = await http.post(f"{api.url}{PREFIX}/locations/batch", json=_body(batch, "tech-s"), headers=phone)
            assert answer.status_code == 202, answer.text
        expected = stays_of(
            [Point(p.at.timestamp(), p.latitude, p.longitude) for p in first + leg + second], StayRules()
        )
        assert sorted(key[0] for key in expected) == ["stop", "stop", "trip"]  # the day has two stops and a trip
        window = {"start_time": (t0 - timedelta(hours=1)).isoformat(), "end_time": datetime.now(UTC).isoformat()}
        reports = f"{projector.url}{PREFIX}/reports"

        (expected_trip,) = [fact for key, fact in expected.items() if key[0] == "trip"]

        async def the_revised_trip() -> list[dict[str, Any]] | None:
            """The trip as the sorted fixes give it: before the drive's fixes came, it began 10-20 s earlier (the
            first stop ended at its last parked fix, not at the drive's first metres)."""
            answer = await http.get(f"{reports}/trips", params=window, headers=dispatcher)
            trips: list[dict[str, Any]] = answer.json()["trips"] if answer.status_code == 200 else []
            # The drive's fixes may reach the processor in several polls: a revision from part of them can already
            # have the final times with a shorter distance, so the whole trip is awaited, not its times alone.
            seen = [
                (_seconds(t["started_at"]), t["ended_at"] and _seconds(t["ended_at"]), t["distance_meters"], t["fixes"])
                for t in trips
            ]
            final = (expected_trip.started_at, expected_trip.ended_at, round(expected_trip.distance_m, 1))
            return trips if seen == [(*final, expected_trip.fixes)] else None

        (trip,) = await eventually(the_revised_trip, timeout=60, what="the revised trip in the report")

        stops = (await http.get(f"{reports}/stops", params=window, headers=dispatcher)).json()
        expected_stops = sorted(fact for key, fact in expected.items() if key[0] == "stop")
        assert [_seconds(s["started_at"]) for s in stops["stops"]] == [s.started_at for s in expected_stops]
        assert [s["ended_at"] is None for s in stops["stops"]] == [False, True]  # the second one lasts
        assert stops["next_cursor"] is None

        # Page by page: one row a page, the cursor of each the way to the next.
        page = (await http.get(f"{reports}/stops", params={**window, "limit": 1}, headers=dispatcher)).json()
        assert len(page["stops"]) == 1 and page["next_cursor"]
        rest = await http.get(
            f"{reports}/stops", params={**window, "limit": 1, "after": page["next_cursor"]}, headers=dispatcher
        )
        assert [page["stops"][0], *rest.json()["stops"]] == stops["stops"] and rest.json()["next_cursor"] is None

        as_csv = await http.get(f"{reports}/trips", params={**window, "format": "csv"}, headers=dispatcher)
        assert as_csv.headers["content-type"].startswith("text/csv")
        (row,) = list(csv.DictReader(io.StringIO(as_csv.text)))
        assert row["technician_id"] == "tech-s" and float(row["distance_meters"]) == trip["distance_meters"]

        day = await http.get(
            f"{reports}/technicians/tech-s/day", params={"date": t0.date().isoformat()}, headers=dispatcher
        )
        assert day.status_code == 200, day.text
        summary = day.json()
        if (t0 + timedelta(minutes=30)).date() == t0.date():  # the day did not turn during the trace
            assert summary["trip_count"] == 1 and summary["distance_meters"] == trip["distance_meters"]
            assert summary["driving_seconds"] == pytest.approx(trip["duration_seconds"], abs=0.01)
            assert summary["stops_elsewhere"] == 2 and summary["stops_at_job_sites"] == 0

        # What another tenant, a technician, a huge range and a forged cursor get.
        other = {"Authorization": f"Bearer {stack.token('another-fleet', Role.DISPATCHER)}"}
        theirs = await http.get(f"{reports}/stops", params={**window, "technician_id": "tech-s"}, headers=other)
        assert theirs.status_code == 200 and theirs.json()["stops"] == []
        technician = {"Authorization": f"Bearer {stack.token(TENANT, Role.TECHNICIAN, sub='tech-s')}"}
        assert (await http.get(f"{reports}/stops", params=window, headers=technician)).status_code == 403
        huge = {"start_time": "2000-01-01T00:00:00Z", "end_time": "2026-01-01T00:00:00Z"}
        refused = await http.get(f"{reports}/trips", params=huge, headers=dispatcher)
        assert refused.status_code == 422 and "31 days" in refused.text
        bad_cursor = await http.get(f"{reports}/stops", params={**window, "after": "not-a-cursor"}, headers=dispatcher)
        assert bad_cursor.status_code == 422
        assert (await http.get(f"{reports}/stops", params=window)).status_code == 401
        expired = stack.sign({"sub": "x", "tenant_id": TENANT, "roles": ["dispatcher"], "exp": int(time.time()) - 60})
        forged = stack.sign({"sub": "x", "tenant_id": TENANT, "roles": ["dispatcher"]}, {"kid": "nobody"})[:-4] + "AAAA"
        for token in (expired, forged):
            answer = await http.get(f"{reports}/trips", params=window, headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 401, answer.text
        # Odd spellings and values: each refused with the parameter named, never a 500 or someone else's rows.
        for params, named in (
            ({"startTime": window["start_time"], "end_time": window["end_time"]}, "start_time"),
            ({**window, "limit": "0"}, "limit"),
            ({**window, "limit": "1001"}, "limit"),
            ({**window, "limit": "1e3"}, "limit"),
            ({**window, "format": "xml"}, "format"),
            ({**window, "technician_id": "t" * 200}, "technician_id"),
            ({**window, "start_time": "2026-12-07T10:00:00"}, "start_time"),  # no offset: which day would it be?
            ({**window, "after": "A" * 600}, "after"),
        ):
            answer = await http.get(f"{reports}/stops", params=params, headers=dispatcher)
            assert answer.status_code == 422 and named in answer.text, (params, answer.status_code, answer.text)
        # Another tenant's page cursor says only where to begin in one's own list: here, past the first stop.
        theirs_cursor = await http.get(f"{reports}/stops", params={**window, "limit": 1}, headers=other)
        assert theirs_cursor.json()["next_cursor"] is None  # they have no stops: nothing to page
        resumed = await http.get(
            f"{reports}/stops", params={**window, "after": page["next_cursor"]}, headers=other
        )  # our cursor, their token
        assert resumed.status_code == 200 and resumed.json()["stops"] == []
        day_params = {"date": t0.date().isoformat()}
        assert (
            await http.get(
                f"{reports}/technicians/tech-s/day",
                params={**day_params, "timezone": "Mars/Olympus"},
                headers=dispatcher,
            )
        ).status_code == 422
        their_day = await http.get(f"{reports}/technicians/tech-s/day", params=day_params, headers=other)
        assert their_day.status_code == 200 and their_day.json()["stops"] == [] and their_day.json()["trip_count"] == 0


async def test_a_recorded_trace_sent_out_of_order_gives_in_the_reports_what_the_rule_gives_its_sorted_fixes(
    stack: Stack,
) -> None:
    """A real receiver's log (tests/data/traces/README.md), moved to three hours ago, posted out of order (batches of
    25 fixes, each pair the later first): the reports end with exactly the stops and trips the rule gives the sorted
    fixes."""
    projector = await stack.start("projector")
    api = await stack.start("producers")
    await stack.start("geofencer")
    began = (datetime.now(UTC) - timedelta(hours=3)).replace(microsecond=0)
    trace = recorded("cerknicko-jezero.gpx", starting=began)
    expected = stays_of([Point(p.at.timestamp(), p.latitude, p.longitude) for p in trace], StayRules())
    assert expected  # the log holds stops and trips
    phone = {"Authorization": f"Bearer {stack.token(TENANT, Role.DEVICE_GATEWAY)}"}
    dispatcher = {"Authorization": f"Bearer {stack.token(TENANT, Role.DISPATCHER)}"}
    # In batches of 25 fixes, each pair sent the later first (within the processor's revision horizon of an hour).
    batches = [trace[at : at + 25] for at in range(0, len(trace), 25)]
    for at in range(0, len(batches) - 1, 2):
        batches[at], batches[at + 1] = batches[at + 1], batches[at]
    window = {"start_time": (began - timedelta(hours=1)).isoformat(), "end_time": datetime.now(UTC).isoformat()}
    async with httpx.AsyncClient(timeout=30) as http:
        for batch in batches:
            answer = await http.post(f"{api.url}{PREFIX}/locations/batch", json=_body(batch, "tech-r"), headers=phone)
            assert answer.status_code == 202, answer.text

        def as_listed(fact_subject: str) -> list[tuple[float, float | None, int]]:
            return sorted(
                (fact.started_at, fact.ended_at, fact.fixes)
                for fact in expected.values()
                if fact.subject == fact_subject
            )

        async def reported() -> bool:
            listed: dict[str, list[tuple[float, float | None, int]]] = {}
            for subject in ("stop", "trip"):
                answer = await http.get(
                    f"{projector.url}{PREFIX}/reports/{subject}s", params=window, headers=dispatcher
                )
                if answer.status_code != 200:
                    return False
                rows = answer.json()[f"{subject}s"]
                listed[subject] = sorted(
                    (_seconds(r["started_at"]), r["ended_at"] and _seconds(r["ended_at"]), r["fixes"]) for r in rows
                )
            return listed == {"stop": as_listed("stop"), "trip": as_listed("trip")}

        await eventually(reported, timeout=60, what="the recorded trace's stops and trips in the reports")
