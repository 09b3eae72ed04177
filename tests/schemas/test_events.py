"""The event envelope round-trips and refuses malformed values."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from schemas.events import LocationData, LocationRecorded, TechnicianUpdated, decode_event, encode_event


def test_events_round_trip_through_their_json_envelope() -> None:
    event = LocationRecorded(
        event_id=uuid.uuid4(),
        tenant_id="a",
        technician_id="t",
        recorded_at=datetime(2026, 1, 1, tzinfo=UTC),
        received_at=datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC),
        data=LocationData(latitude=1.0, longitude=2.0),
    )
    encoded = encode_event(event)
    assert decode_event(encoded) == event
    assert b'"type":"location_recorded"' in encoded and b'"schema_version":1' in encoded


@pytest.mark.parametrize(
    "value",
    [
        b"not json",
        b'{"type": "teleported"}',
        b'{"type": "technician_updated", "event_id": "x"}',
        b'{"type":"location_recorded","event_id":"00000000-0000-0000-0000-000000000001","schema_version":2,'
        b'"tenant_id":"a","technician_id":"t","recorded_at":"2026-01-01T00:00:00Z",'
        b'"received_at":"2026-01-01T00:00:00Z","data":{"latitude":1,"longitude":2}}',
    ],
)
def test_malformed_records_do_not_decode(value: bytes) -> None:
    with pytest.raises(ValidationError):
        decode_event(value)


def test_a_technician_update_may_leave_fields_out() -> None:
    event = decode_event(
        b'{"type":"technician_updated","event_id":"00000000-0000-0000-0000-000000000001","tenant_id":"a",'
        b'"technician_id":"t","recorded_at":"2026-01-01T00:00:00Z","received_at":"2026-01-01T00:00:00Z",'
        b'"data":{"status":"on_job"}}'
    )
    assert isinstance(event, TechnicianUpdated) and event.data.name is None and event.data.status == "on_job"
