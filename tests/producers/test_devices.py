"""Devices and Traccar Client's OsmAnd protocol against the ingest API as processes and a real broker: the three
generations' requests as the apps send them, units, resends, revocation across processes, tenant isolation."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from domain.devices import DeviceBook, fix_event_id, key_sha256
from producers.checks import fix_problem
from producers.osmand import OsmAndError, parse, recorded_at
from producers.trackers import StopSignal, overland_batch, owntracks_message
from schemas.claims import Role
from schemas.devices import DeviceRegistered, DeviceRevoked
from schemas.events import LocationRecorded, TrackingStopped
from tests.support.kafka_io import end_offsets, read_all
from tests.support.maps import connect, recv_json, updates_until
from tests.support.stack import Service, Stack, eventually

OSMAND = "/api/v1/ingest/osmand"
DEVICES = "/api/v1/field-service/devices"


def test_traccar_timestamps_and_aliases_read_as_traccar_reads_them() -> None:
    moment = datetime(2026, 11, 30, 8, 15, 42, tzinfo=UTC)
    for text in (
        "1796026542",
        "1796026542000",
        "2026-11-30T08:15:42Z",
        "2026-11-30T08:15:42.000+00:00",
        "2026-11-30 08:15:42",
    ):
        assert recorded_at(text) == moment, text
    legacy = parse({"deviceid": "k", "location": "6.5,3.4", "heading": "270", "speed": "-1"}, "", b"")
    assert legacy.key == "k" and legacy.fields == {"latitude": 6.5, "longitude": 3.4, "heading": 270.0}
    assert parse({"id": "k"}, "", b"").fields is None  # no position: nothing to record
    for query in (
        {"id": "k", "lat": "x", "lon": "1"},
        {"id": "k", "lat": "nan", "lon": "1"},
        {"id": "k", "lat": "1", "lon": "1", "timestamp": "yesterday"},
    ):
        with pytest.raises(OsmAndError):
            parse(query, "", b"")


def test_a_revocation_replaces_the_registration_in_the_book() -> None:
    book, at = DeviceBook(), datetime(2026, 11, 30, tzinfo=UTC)
    book.apply(DeviceRegistered(device_id="d1", tenant_id="a", technician_id="t", key_sha256=key_sha256("k"), at=at))
    device = book.by_key("k")
    assert device is not None and device.technician_id == "t" and book.by_key("other") is None
    assert book.get("b", "d1") is None  # another tenant's device is no device
    book.apply(DeviceRevoked(device_id="d1", tenant_id="a", at=at))
    assert book.by_key("k") is None and book.of_tenant("a") == []
    assert fix_event_id("d1", at, 1.0, 2.0) == fix_event_id("d1", at, 1.0, 2.0) != fix_event_id("d1", at, 1.0, 2.5)


async def _register(api: Service, stack: Stack, tenant: str, technician: str) -> dict[str, Any]:
    admin = {"Authorization": f"Bearer {stack.token(tenant, Role.ADMIN)}"}
    async with httpx.AsyncClient(base_url=api.url) as http:
        answer = await http.post(DEVICES, json={"technician_id": technician, "label": "phone"}, headers=admin)
    assert answer.status_code == 201, answer.text
    registered: dict[str, Any] = answer.json()
    return registered


def _fixes(events: list[tuple[Any, Any]]) -> list[LocationRecorded]:
    return [event for event, _ in events if isinstance(event, LocationRecorded)]


@pytest.mark.integration
async def test_the_three_generations_of_traccar_client_land_as_the_devices_fixes_once_each(stack: Stack) -> None:
    api = await stack.start("producers")
    device = await _register(api, stack, "tenant-a", "tech-7")
    key = device["key"]
    assert device["setup"]["traccar_client"] == {"server_url": f"{api.url}{OSMAND}", "device_identifier": key}
    now = int(time.time())
    iso = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    legacy = (
        f"{OSMAND}?id={key}&timestamp={now - 20}&lat=6.5&lon=3.4&speed=10.0&bearing=90.0&altitude=12.0"
        f"&accuracy=0.0&batt=80.0&charge=true"
    )
    form = (
        f"id={key}&lat=6.6&lon=3.5&timestamp={now - 10}&accuracy=5.0&altitude=20.0&speed=1.50&bearing=180.0&batt=79.0"
    )
    body_9x = {
        "location": {
            "timestamp": iso,
            "coords": {
                "latitude": 6.7,
                "longitude": 3.6,
                "accuracy": 4.0,
                "speed": 2.5,
                "heading": -1,
                "altitude": 30.0,
            },
            "is_moving": True,
            "odometer": 120.0,
            "event": "motionchange",
            "battery": {"level": 0.77, "is_charging": False},
            "activity": {"type": "in_vehicle"},
            "extras": {},
        },
        "device_id": key,
    }
    async with httpx.AsyncClient(base_url=api.url) as http:
        for _ in range(2):  # each sent twice: a resend after a timeout records nothing more
            answers = [
                await http.post(legacy),
                await http.post(OSMAND, content=form, headers={"Content-Type": "application/x-www-form-urlencoded"}),
                await http.post(OSMAND, content=json.dumps(body_9x), headers={"Content-Type": "application/json"}),
                await http.get(f"{OSMAND}?id={key}"),  # no position: nothing recorded
            ]
            assert [(a.status_code, a.content) for a in answers] == [(200, b"")] * 4
    fixes = _fixes(await read_all(stack.kafka))
    assert len(fixes) == 3  # three fixes, each once
    first, second, third = fixes
    assert {f.tenant_id for f in fixes} == {"tenant-a"} and {f.technician_id for f in fixes} == {"tech-7"}
    assert first.recorded_at == datetime.fromtimestamp(now - 20, UTC) and first.data.speed_kmh == 18.52  # knots
    assert first.data.heading == 90.0 and first.data.accuracy_meters == 0.0 and first.data.altitude == 12.0
    assert first.data.metadata == {"battery_percent": 80.0, "charging": True}
    assert second.data.speed_kmh == round(1.5 * 1.852, 3) and second.data.latitude == 6.6
    assert third.data.speed_kmh == 9.0 and third.data.heading is None  # m/s; -1 is unknown
    assert third.recorded_at == datetime.fromtimestamp(now, UTC)
    assert third.data.metadata == {"battery_percent": 77.0, "charging": False}


@pytest.mark.integration
async def test_refusals_name_the_reason_and_record_nothing(stack: Stack) -> None:
    api = await stack.start("producers")
    key = (await _register(api, stack, "tenant-a", "tech-7"))["key"]
    before = await end_offsets(stack.kafka)
    json_type = {"Content-Type": "application/json"}
    cases = [
        ("GET", f"{OSMAND}?lat=1&lon=2", None, {}, 401, "missing"),
        ("GET", f"{OSMAND}?id=not-a-key&lat=1&lon=2", None, {}, 401, "unknown"),
        ("GET", f"{OSMAND}?id={key}&lat=91&lon=2", None, {}, 422, "latitude"),
        ("GET", f"{OSMAND}?id={key}&lat=1&lon=2&speed=abc", None, {}, 422, "speed"),
        ("GET", f"{OSMAND}?id={key}&lat=1&lon=2&timestamp=2099-01-01 00:00:00", None, {}, 422, "future"),
        ("GET", f"{OSMAND}?id={key}&lat=1&lon=2&timestamp=946684800", None, {}, 422, "retention"),
        ("POST", OSMAND, b'{"device_id": ', json_type, 422, "body"),
        ("POST", OSMAND, b"[" * 100 + b"]" * 100, json_type, 422, "nested"),
        (
            "POST",
            OSMAND,
            json.dumps({"device_id": key, "location": {"coords": {"latitude": "6", "longitude": 3}}}),
            json_type,
            422,
            "latitude",
        ),
        ("POST", OSMAND, b"x" * 2_000_000, {}, 413, "bytes"),
    ]
    async with httpx.AsyncClient(base_url=api.url) as http:
        for method, url, body, headers, expected, reason in cases:
            answer = await http.request(method, url, content=body, headers=headers)
            assert answer.status_code == expected and reason in answer.json()["message"], (url, answer.text)
            assert key not in answer.text
    assert await end_offsets(stack.kafka) == before
    assert key not in api.log()


@pytest.mark.serial
@pytest.mark.integration
async def test_a_revocation_reaches_every_ingest_process_within_2_s_and_tenants_stay_apart(stack: Stack) -> None:
    first, second = await stack.start("producers"), await stack.start("producers")
    device = await _register(first, stack, "tenant-a", "tech-7")
    other = await _register(second, stack, "tenant-b", "tech-7")
    url = f"{OSMAND}?id={device['key']}&lat=1.0&lon=2.0"
    async with httpx.AsyncClient() as http:

        async def accepted_by_second() -> bool:
            return (await http.get(f"{second.url}{url}")).status_code == 200

        await eventually(accepted_by_second, timeout=2, what="the second process to know the new device")
        admin_b = {"Authorization": f"Bearer {stack.token('tenant-b', Role.ADMIN)}"}
        assert (await http.delete(f"{second.url}{DEVICES}/{device['device_id']}", headers=admin_b)).status_code == 404
        listed = (await http.get(f"{second.url}{DEVICES}", headers=admin_b)).json()
        assert [d["device_id"] for d in listed] == [other["device_id"]]  # its own only, and never a key
        dispatcher = {"Authorization": f"Bearer {stack.token('tenant-a', Role.DISPATCHER)}"}
        assert (await http.get(f"{first.url}{DEVICES}", headers=dispatcher)).status_code == 403
        admin_a = {"Authorization": f"Bearer {stack.token('tenant-a', Role.ADMIN)}"}
        revoked_at = time.monotonic()
        assert (await http.delete(f"{first.url}{DEVICES}/{device['device_id']}", headers=admin_a)).status_code == 204

        async def refused_by_both() -> bool:
            answers = await asyncio.gather(http.get(f"{first.url}{url}"), http.get(f"{second.url}{url}"))
            return all(answer.status_code == 401 for answer in answers)

        await eventually(refused_by_both, timeout=2, what="both processes to refuse the revoked key")
        assert time.monotonic() - revoked_at < 2.0
        assert (await http.get(f"{first.url}{OSMAND}?id={other['key']}&lat=3.0&lon=4.0")).status_code == 200
    fixes = _fixes(await read_all(stack.kafka))
    assert {(f.tenant_id, f.data.latitude) for f in fixes} == {("tenant-a", 1.0), ("tenant-b", 3.0)}


OWNTRACKS = "/api/v1/ingest/owntracks"
OVERLAND = "/api/v1/ingest/overland"


def _basic(key: str, user: str = "ada") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{key}".encode()).decode()}


@pytest.mark.integration
async def test_owntracks_and_overland_messages_land_as_the_devices_fixes_once_each(stack: Stack) -> None:
    api = await stack.start("producers")
    device = await _register(api, stack, "tenant-a", "tech-9")
    key, now = device["key"], int(time.time())
    assert device["setup"]["owntracks"]["password"] == key and device["setup"]["overland"]["access_token"] == key
    location = {
        "_type": "location",
        "acc": 12,
        "alt": 49,
        "batt": 64,
        "bs": 2,
        "conn": "w",
        "lat": 52.5163,
        "lon": 13.3778,
        "t": "u",
        "tid": "ad",
        "tst": now - 30,
        "vel": 17,
        "cog": 270,
        "topic": "owntracks/ada/phone",
    }
    transition = {
        "_type": "transition",
        "event": "enter",
        "desc": "Depot",
        "lat": 52.5,
        "lon": 13.4,
        "tst": now,
        "acc": 10,
        "tid": "ad",
        "wtst": 1,
    }
    iso = datetime.fromtimestamp(now - 20, UTC).strftime("%Y-%m-%dT%H:%M:%S+0100")  # an offset without a colon
    closed = datetime.fromtimestamp(now - 10, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    batch = {
        "locations": [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [-122.4194, 37.7749]},
                "properties": {
                    "timestamp": iso,
                    "altitude": 16,
                    "speed": 4,
                    "horizontal_accuracy": 5,
                    "vertical_accuracy": 3,
                    "motion": ["driving"],
                    "battery_state": "charging",
                    "battery_level": 0.89,
                    "device_id": "ada-phone",
                    "wifi": "",
                    "course": 90,
                },
            },
            # The app closed 10 s after that fix (an action logged then, sent with the next batch): tracking stopped.
            {"type": "Feature", "geometry": None, "properties": {"action": "will_terminate", "timestamp": closed}},
            {"type": "Feature", "geometry": None, "properties": {"action": "resumed_location_updates"}},  # not a stop
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [-122.4195, 91.0]},
                "properties": {"timestamp": iso},
            },
            # Features that cannot be read: each refused alone, the batch still taken (it was 422 for all, and
            # Overland resends a refused batch for ever)
            "a string, not a feature",
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [3.6]}, "properties": {}},
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [3.6, 6.5]}, "properties": [1]},
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [3.6, 6.5]},
                "properties": {"timestamp": True},
            },
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [3.6, 6.5]},
                "properties": {"timestamp": "yesterday"},
            },
        ],
        "current": {"type": "Feature"},
    }
    async with httpx.AsyncClient(base_url=api.url) as http:
        for _ in range(2):  # each sent twice: a resend records nothing more
            for message in (location, transition, None):
                answer = await http.post(
                    OWNTRACKS,
                    content=json.dumps(message) if message else b"",
                    headers={**_basic(key), "Content-Type": "application/json"},
                )
                assert (answer.status_code, answer.json()) == (200, [])
            answer = await http.post(OVERLAND, json=batch, headers={"Authorization": f"Bearer {key}"})
            assert answer.status_code == 200 and answer.json()["result"] == "ok"
            assert answer.json()["rejected"] == [
                "locations[4]: expected a GeoJSON Feature",
                "locations[5].geometry: expected a Point [lon, lat]",
                "locations[6].properties: expected an object",
                "locations[7].properties.timestamp: expected a time",
                "locations[8].properties.timestamp: 'yesterday' is not an ISO 8601 time",
                "locations[3].latitude: Expected `float` <= 90.0",
            ]
        refused = await http.post(OWNTRACKS, json=location)
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")
        assert (await http.post(OVERLAND, json=batch)).status_code == 401
        assert (await http.post(f"{OVERLAND}?token={key}", json={"locations": []})).json() == {"result": "ok"}
        # OwnTracks' last will (its MQTT broker's, forwarded): tracking stopped when received.
        will = await http.post(
            OWNTRACKS,
            json={"_type": "lwt", "tst": now - 3600},
            headers={**_basic(key), "Content-Type": "application/json"},
        )
        assert (will.status_code, will.json()) == (200, [])
        untimed = {"locations": [{"type": "Feature", "properties": {"action": "paused_location_updates"}}]}
        answer = await http.post(OVERLAND, json=untimed, headers={"Authorization": f"Bearer {key}"})
        assert answer.json()["rejected"] == ["locations[0].properties.timestamp: an action needs its time"]
        metrics = (await http.get("/metrics", headers=api.admin_headers)).text
        assert (
            'locstream_ingest_device_fixes_rejected_total{protocol="overland"} 13.0' in metrics
        )  # 6 a batch, twice, 1
    appended = await read_all(stack.kafka)
    stops = [event for event, _ in appended if isinstance(event, TrackingStopped)]
    assert [(s.data.app, s.data.reason, s.technician_id) for s in stops] == [
        ("overland", "terminated", "tech-9"),  # once, though the batch was sent twice
        ("owntracks", "last_will", "tech-9"),
    ]
    assert stops[0].recorded_at == datetime.fromtimestamp(now - 10, UTC)
    assert stops[1].recorded_at > datetime.fromtimestamp(now - 60, UTC)  # when received, not the will's tst
    from_owntracks, from_overland = _fixes(appended)
    assert (
        from_owntracks.recorded_at == datetime.fromtimestamp(now - 30, UTC) and from_owntracks.technician_id == "tech-9"
    )
    assert (from_owntracks.data.speed_kmh, from_owntracks.data.heading, from_owntracks.data.accuracy_meters) == (
        17,
        270,
        12,
    )
    assert from_owntracks.data.metadata == {"battery_percent": 64, "charging": True}
    assert (from_overland.data.latitude, from_overland.data.longitude) == (37.7749, -122.4194)
    assert from_overland.data.speed_kmh == 14.4 and from_overland.data.heading == 90  # m/s to km/h
    assert from_overland.recorded_at == datetime.fromisoformat(iso)
    assert from_overland.data.metadata == {"battery_percent": 89.0, "charging": True}


@pytest.mark.integration
async def test_an_offline_burst_goes_to_history_and_never_moves_a_marker_back(stack: Stack) -> None:
    api = await stack.start("producers")
    projector = await stack.start("projector")
    key = (await _register(api, stack, "tenant-a", "tech-3"))["key"]
    now = int(time.time()) - 2
    last_seen = now - 300  # the phone was last seen live five minutes ago; its queue reaches further back
    async with httpx.AsyncClient(base_url=api.url) as http:
        assert (await http.post(f"{OSMAND}?id={key}&timestamp={last_seen}&lat=0.9999&lon=3.0")).status_code == 200
    edge = await stack.start("ws-edge")
    dispatcher = await connect(edge, stack.token("tenant-a"))
    assert (await recv_json(dispatcher))["type"] == "connected"
    assert [entry["latitude"] for entry in (await recv_json(dispatcher))["data"]] == [0.9999]
    async with httpx.AsyncClient(base_url=api.url) as http:  # 500 fixes, oldest first, 1 s and 1.1 m apart, ending
        for i in range(500):  # now, one per request as the app sends its queue
            stamp, latitude = now - 499 + i, round(1.0 + i / 100_000, 5)
            answer = await http.post(f"{OSMAND}?id={key}&timestamp={stamp}&lat={latitude}&lon=3.0")
            assert answer.status_code == 200, answer.text

    async def history_of_all() -> bool:
        headers = {"Authorization": f"Bearer {stack.token('tenant-a')}"}
        async with httpx.AsyncClient(base_url=projector.url, headers=headers) as http:
            path = "/api/v1/field-service/technicians/tech-3/location-history"
            history = await http.get(path, params={"limit": 1000})
        return history.status_code == 200 and history.json()["total_points"] == 501

    await eventually(history_of_all, timeout=30, what="the projector's history to hold the burst and the live fix")
    table = {s.technician_id: s for s in (await stack.snapshot()).states if s.tenant_id == "tenant-a"}
    newest = table["tech-3"].fix
    assert newest is not None and newest.latitude == round(1.0 + 499 / 100_000, 5)  # the newest of all
    seen = await updates_until(dispatcher, lambda got: bool(got) and got[-1]["data"]["latitude"] == newest.latitude)
    times = [datetime.fromisoformat(update["data"]["last_update"]) for update in seen]
    assert times == sorted(times)  # never back in time
    assert min(times) >= datetime.fromtimestamp(last_seen, UTC)  # nothing older than the live fix reached the map
    assert len(seen) == 301  # the 199 fixes older than the live one moved nothing (one ties it, later in the log)
    old = [u for u in seen if datetime.fromisoformat(u["data"]["last_update"]).timestamp() < now - 70]
    assert old and all(update["data"].get("backfill") is True for update in old)  # drawn, not animated


def test_an_impossible_battery_level_is_left_out_of_an_apps_fix_and_refused_from_a_native_one() -> None:
    """batt=500 was stored as 500 %. An app's fix is still taken (refused, the app would resend it for ever)."""
    query = {"id": "k", "lat": "6.5", "lon": "3.4"}
    for batt, kept in (("500", None), ("-1", None), ("-5", None), ("100", 100.0), ("0", 0.0)):
        fields = parse({**query, "batt": batt}, "", b"").fields
        assert fields is not None and fields["latitude"] == 6.5
        assert (fields.get("metadata") or {}).get("battery_percent") == kept, batt
    document = {"device_id": "k", "location": {"coords": {"latitude": 6.5, "longitude": 3.4}, "battery": {"level": 5}}}
    assert "metadata" not in (parse({}, "application/json", json.dumps(document).encode()).fields or {})
    owntracks = owntracks_message(json.dumps({"_type": "location", "lat": 6.5, "lon": 3.4, "batt": 500}).encode())
    assert isinstance(owntracks, dict) and "metadata" not in owntracks
    feature = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [3.4, 6.5]}, "properties": {}}
    feature["properties"] = {"battery_level": 1.5}
    (place, fields), *_ = overland_batch(json.dumps({"locations": [feature]}).encode()).fixes
    assert place == "locations[0]." and "metadata" not in fields
    now = datetime.now(UTC)
    problem = fix_problem(now, {"battery_percent": 500}, now, timedelta(minutes=2), timedelta(days=7))
    assert problem is not None and "battery_percent" in problem
    assert fix_problem(now, {"battery_percent": 55.5}, now, timedelta(minutes=2), timedelta(days=7)) is None


def test_the_apps_stop_signals_are_read_and_their_other_actions_are_not() -> None:
    at = "2026-12-07T10:00:00Z"
    point = {"type": "Point", "coordinates": [3.4, 6.5]}
    features = [
        {"type": "Feature", "properties": {"action": "paused_location_updates", "timestamp": at}},
        {"type": "Feature", "geometry": point, "properties": {"action": "will_terminate", "timestamp": at}},
        {"type": "Feature", "geometry": point, "properties": {"action": "resumed_location_updates", "timestamp": at}},
        {"type": "Feature", "geometry": point, "properties": {"action": "visit", "timestamp": at}},
        {"type": "Feature", "geometry": point, "properties": {"timestamp": at}},
        {"type": "Feature", "properties": {"action": "will_terminate", "timestamp": "soon"}},
    ]
    batch = overland_batch(json.dumps({"locations": features}).encode())
    moment = datetime(2026, 12, 7, 10, tzinfo=UTC)
    assert [(s.reason, s.app, s.at, s.place) for s in batch.stops] == [
        ("paused", "overland", moment, "locations[0]."),
        ("terminated", "overland", moment, "locations[1]."),
    ]
    assert [place for place, _ in batch.fixes] == ["locations[4]."]
    assert batch.rejected == ["locations[5].properties.timestamp: 'soon' is not an ISO 8601 time"]
    will = owntracks_message(json.dumps({"_type": "lwt", "tst": 1_700_000_000}).encode())
    assert isinstance(will, StopSignal) and (will.reason, will.app, will.at) == ("last_will", "owntracks", None)
    assert owntracks_message(json.dumps({"_type": "transition", "tst": 1}).encode()) is None
