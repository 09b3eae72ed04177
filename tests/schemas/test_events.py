"""The event envelope round-trips and refuses malformed values."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas.events import (
    InvalidEventError,
    LocationRecorded,
    TechnicianUpdated,
    decode_event,
    encode_event,
    event_json_schema,
)
from tests.support.events import location


def test_events_round_trip_through_their_json_envelope() -> None:
    event = location(
        "a", "t", datetime(2026, 1, 1, tzinfo=UTC), 1.0, 2.0, received_at=datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
    )
    encoded = encode_event(event)
    assert decode_event(encoded) == event
    assert b'"type":"location_recorded"' in encoded and b'"schema_version":1' in encoded


VALID = (
    b'{"type":"location_recorded","event_id":"00000000-0000-0000-0000-000000000001","schema_version":1,'
    b'"tenant_id":"a","technician_id":"t","recorded_at":"2026-01-01T00:00:00Z",'
    b'"received_at":"2026-01-01T00:00:00Z","data":{"latitude":1,"longitude":2}}'
)


def test_the_valid_example_decodes() -> None:
    event = decode_event(VALID)
    assert isinstance(event, LocationRecorded) and event.data.latitude == 1.0 and event.type == "location_recorded"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"not json", "undecodable"),
        (b'{"type": "teleported"}', "unknown_type"),
        (VALID.replace(b'"type":"location_recorded",', b""), "unknown_type"),
        (b'{"type": "technician_updated", "event_id": "x"}', "invalid"),
        (VALID.replace(b'"schema_version":1', b'"schema_version":2'), "unsupported_schema_version"),
        (VALID.replace(b'"latitude":1', b'"latitude":"1"'), "invalid"),  # no string-to-number coercion
        (VALID.replace(b'"latitude":1', b'"latitude":true'), "invalid"),
        (VALID.replace(b'"latitude":1', b'"latitude":1e999'), "invalid"),  # infinity is out of range
        (VALID.replace(b'"latitude":1', b'"latitude":90.5'), "invalid"),
        (VALID.replace(b'"longitude":2', b'"longitude":-180.01'), "invalid"),
        (VALID.replace(b'00:00:00Z","data"', b'00:00:00","data"'), "invalid"),  # a time without its offset
        (VALID.replace(b'"tenant_id":"a"', b'"tenant_id":""'), "invalid"),
        (VALID.replace(b'"longitude":2}', b'"longitude":2,"altitude_ft":3}'), "invalid"),  # unknown field
        (VALID.replace(b'"technician_id":"t",', b'"technician_id":"t","extra":1,'), "invalid"),
    ],
)
def test_malformed_records_do_not_decode_and_say_why(value: bytes, reason: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        decode_event(value)
    assert caught.value.reason == reason


def test_the_topic_schema_names_both_event_types() -> None:
    schema = event_json_schema()
    assert set(schema["$defs"]) >= {"LocationRecorded", "TechnicianUpdated", "LocationData", "TechnicianData"}
    latitude = schema["$defs"]["LocationData"]["properties"]["latitude"]
    assert latitude == {"type": "number", "minimum": -90, "maximum": 90}


def test_a_technician_update_may_leave_fields_out() -> None:
    event = decode_event(
        b'{"type":"technician_updated","event_id":"00000000-0000-0000-0000-000000000001","tenant_id":"a",'
        b'"technician_id":"t","recorded_at":"2026-01-01T00:00:00Z","received_at":"2026-01-01T00:00:00Z",'
        b'"data":{"status":"on_job"}}'
    )
    assert isinstance(event, TechnicianUpdated) and event.data.name is None and event.data.status == "on_job"
