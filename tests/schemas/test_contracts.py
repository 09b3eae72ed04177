"""The published contracts (docs/contracts/) are what the code generates, are valid, and describe what the services
really send: events as the producers encode them, frames as the edge encodes them."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import jsonschema
import pytest

from schemas.contracts import EVENTS, OUT, asyncapi, differences, json_schemas
from schemas.events import CrossingData, Event, GeofenceEntered, encode_event
from schemas.geofences import Circle, GeofenceDefined, Polygon, fence_wire
from tests.support.events import location as location_recorded
from tests.support.events import offline, online, retracted, stay, tracking_stopped
from tests.support.events import profile as technician_profile
from ws_edge import messages

ASYNCAPI_SCHEMA = Path(__file__).resolve().parents[2] / "ws_edge/web/node_modules/@asyncapi/specs/schemas/3.0.0.json"
NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def test_the_checked_in_contracts_are_current() -> None:
    assert differences() == [], "run: python -m schemas.contracts"


def test_every_event_type_of_the_topic_has_its_published_schema() -> None:
    assert set(EVENTS.values()) == set(get_args(Event))


def test_the_asyncapi_document_validates_against_the_asyncapi_3_schema() -> None:
    assert ASYNCAPI_SCHEMA.exists(), "npm ci --prefix ws_edge/web (make test does) installs @asyncapi/specs"
    document = json.loads((OUT / "asyncapi.json").read_text())
    jsonschema.validate(document, json.loads(ASYNCAPI_SCHEMA.read_text()))
    assert set(document["channels"]) == {"mapFeedV1", "mapFeedV2", "locations"}
    v1, v2 = document["channels"]["mapFeedV1"]["messages"], document["channels"]["mapFeedV2"]["messages"]
    assert "LocationUpdate" in v1 and "LocationBatch" not in v1 and "LocationBatch" in v2 and "LocationUpdate" not in v2


def _resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_every_reference_resolves_to_a_message_or_a_schema_file() -> None:
    document = asyncapi()
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            refs.extend([node["$ref"]] if isinstance(node.get("$ref"), str) else [])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    assert refs
    for ref in refs:
        if ref.startswith("#/"):
            assert _resolve(document, ref) is not None
        else:
            assert (OUT / ref).exists(), ref


def test_real_events_and_frames_validate_against_their_schemas() -> None:
    schemas = json_schemas()
    for schema in schemas.values():
        jsonschema.Draft202012Validator.check_schema(schema)
    fix = location_recorded("a", "t1", NOW, 6.5, 3.3, accuracy_meters=5.0)
    named = technician_profile("a", "t1", NOW, name="Ada", status="on_job")
    crossing = GeofenceEntered(
        event_id=uuid.uuid4(),
        tenant_id="a",
        technician_id="t1",
        recorded_at=NOW,
        received_at=NOW,
        data=CrossingData(geofence_id="site-1", job_id="j1", distance_meters=12.5, fix_event_id=fix.event_id),
    )
    circle = GeofenceDefined(
        tenant_id="a", geofence_id="site-1", at=NOW, shape=Circle(latitude=6.5, longitude=3.3), job_id="j1"
    )
    ring = [[3.3, 6.5], [3.31, 6.5], [3.31, 6.51], [3.3, 6.5]]
    polygon = GeofenceDefined(tenant_id="a", geofence_id="yard", at=NOW, shape=Polygon(coordinates=[ring]))
    jsonschema.validate(json.loads(encode_event(fix)), schemas["events/LocationRecorded.json"])
    jsonschema.validate(json.loads(encode_event(named)), schemas["events/TechnicianUpdated.json"])
    location = {
        "technician_id": "t1",
        "technician_name": "Ada",
        "latitude": 6.5,
        "longitude": 3.3,
        "last_update": NOW,
        "status": "on_job",
        "stale": False,
    }
    update = messages.update(location, 7, "Y3Vyc29y")
    sent = {
        "ws/LocationUpdate.json": update.v1,
        "ws/LocationBatch.json": messages.location_batch([update]),
        "ws/InitialState.json": messages.initial_state([location], "c", resumed=False),
        "ws/Connected.json": messages.connected("id", "a", 2),
        "ws/ReplayDone.json": messages.replay_done(3),
        "ws/Pong.json": messages.PONG,
        "ws/GeofenceEvent.json": messages.geofence_event(crossing, "Ada"),
        "ws/GeofenceUpdated.json": messages.geofence_updated(fence_wire(circle)),
        "ws/GeofenceUpdated.json#polygon": messages.geofence_updated(fence_wire(polygon)),
        "ws/GeofenceRemoved.json": messages.geofence_removed("site-1"),
    }
    jsonschema.validate(json.loads(encode_event(crossing)), schemas["events/GeofenceEntered.json"])
    facts = [
        stay("stop_started", "a", "t1", NOW),
        stay("trip_ended", "a", "t1", NOW, NOW),
        retracted("a", "t1", "stop", NOW, NOW),
        offline("a", "t1", NOW),
        online("a", "t1", NOW, NOW),
        tracking_stopped("a", "t1", NOW),
    ]
    for fact in facts:
        jsonschema.validate(json.loads(encode_event(fact)), schemas[f"events/{type(fact).__name__}.json"])
    marked = {**location, "stale": True, "offline_since": NOW, "offline_reason": "tracking_stopped"}
    marked |= {"motion": "stopped", "motion_since": NOW}
    sent["ws/LocationUpdate.json#marked"] = messages.update(marked, 8, "Y3Vyc29y").v1
    for name, text in sent.items():
        jsonschema.validate(json.loads(text), schemas[name.split("#")[0]])
    bad = json.loads(encode_event(fix))
    bad["data"]["latitude"] = 91
    with pytest.raises(jsonschema.ValidationError, match="91"):
        jsonschema.validate(bad, schemas["events/LocationRecorded.json"])
