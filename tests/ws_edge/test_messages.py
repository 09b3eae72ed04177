"""The edge's hand-encoded frames conform to the protocol models in ``schemas.ws`` (the contract)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from domain.position import Position
from domain.projection import Fix, TechnicianState, apply
from schemas.ws import (
    Connected,
    InitialState,
    LocationBatch,
    LocationUpdate,
    Pong,
    Resumed,
    TechnicianRemoved,
)
from tests.support.events import T0, location, offline, online, stay
from ws_edge import messages

STATE = TechnicianState(
    tenant_id="a",
    technician_id="t1",
    name="Ada",
    status="on_job",
    fix=Fix(
        latitude=6.5, longitude=3.4, recorded_at=datetime(2026, 11, 26, 8, 30, tzinfo=UTC), position=Position(0, 1)
    ),
)


def test_frames_validate_against_the_protocol_models() -> None:
    location = messages.location_of(STATE)
    assert location is not None
    encoded = messages.update(location, 7, "Y3Vyc29y")
    update = LocationUpdate.model_validate_json(encoded.v1)
    assert update.data.technician_name == "Ada" and update.data.last_update == STATE.fix.recorded_at  # type: ignore[union-attr]
    assert update.cursor == "Y3Vyc29y" and encoded.offset == 7 and encoded.technician_id == "t1"
    initial = InitialState.model_validate_json(messages.initial_state([location], "c0", resumed=False))
    assert initial.data == [update.data] and initial.cursor == "c0" and initial.resumed is False
    assert "resumed" not in json.loads(messages.initial_state([], "c0"))
    batch = LocationBatch.model_validate_json(messages.location_batch([encoded, messages.update(location, 8, "c8")]))
    assert batch.data == [update.data, update.data] and batch.cursor == "c8"
    backfilled = LocationUpdate.model_validate_json(messages.update(location, 9, "c9", backfill=True).v1)
    assert backfilled.data.backfill is True and update.data.backfill is False
    assert Resumed.model_validate_json(messages.resumed("c0", 3)).missed == 3
    assert TechnicianRemoved.model_validate_json(messages.technician_removed("t1")).technician_id == "t1"
    assert Connected.model_validate_json(messages.connected("c1", "a", protocol=2)).protocol == 2
    assert Pong.model_validate_json(messages.PONG).type == "pong"


def test_times_are_written_in_utc_with_z_as_the_seed_did() -> None:
    location = messages.location_of(STATE)
    assert location is not None
    assert json.loads(messages.update(location, 0, "c").v1)["data"]["last_update"] == "2026-11-26T08:30:00Z"


def test_a_technician_without_a_position_is_not_on_the_map() -> None:
    assert messages.location_of(TechnicianState(tenant_id="a", technician_id="t2")) is None


def test_a_technician_offline_as_the_facts_say_is_stale_keeps_its_status_and_says_since_when() -> None:
    assert STATE.fix is not None
    seen = STATE.fix.recorded_at
    said = apply(STATE, offline("a", "t1", seen), Position(0, 2))
    entry = messages.location_of(said)
    assert entry is not None and entry["stale"] is True and entry["status"] == "on_job"
    assert (entry["offline_since"], entry["offline_reason"]) == (seen, "silent")
    back = messages.location_of(apply(said, online("a", "t1", seen, seen + timedelta(minutes=30)), Position(0, 3)))
    assert back is not None and back["stale"] is False and "offline_since" not in back
    fresh = messages.location_of(STATE)
    assert fresh is not None and fresh["stale"] is False and not {"offline_since", "motion"} & fresh.keys()
    LocationUpdate.model_validate({"type": "location_update", "data": entry, "cursor": "c"})


def test_a_technician_says_stopped_or_moving_since_its_latest_stop_or_trip() -> None:
    assert STATE.fix is not None
    at = STATE.fix.recorded_at
    cases = [
        (stay("stop_started", "a", "t1", at), ("stopped", at)),
        (stay("stop_ended", "a", "t1", at, at + timedelta(minutes=23)), ("moving", at + timedelta(minutes=23))),
        (stay("trip_started", "a", "t1", at), ("moving", at)),
        (stay("trip_ended", "a", "t1", at, at + timedelta(minutes=9)), ("stopped", at + timedelta(minutes=9))),
    ]
    for event, (motion, since) in cases:
        entry = messages.location_of(apply(STATE, event, Position(0, 5)))
        assert entry is not None and (entry["motion"], entry["motion_since"]) == (motion, since)
        LocationUpdate.model_validate({"type": "location_update", "data": entry, "cursor": "c"})


def test_a_map_entry_carries_the_details_the_fix_had_and_the_battery_a_device_app_reported() -> None:
    bare = messages.location_of(STATE)
    assert bare is not None and not {"accuracy_meters", "speed_kmh", "heading", "battery_percent"} & bare.keys()
    event = location("a", "t1", T0, 6.5, 3.4, speed_kmh=42.0, heading=90.0, metadata={"battery_percent": 77})
    state = apply(None, event, Position(0, 2))
    entry = messages.location_of(state)
    assert entry is not None
    assert (entry["speed_kmh"], entry["heading"], entry["battery_percent"]) == (42.0, 90.0, 77.0)
    assert "accuracy_meters" not in entry
    LocationUpdate.model_validate({"type": "location_update", "data": entry, "cursor": "c"})  # the contract has them
    for odd in ("77", True, 140, -1):  # not a percentage: no battery shown
        odd_state = apply(None, location("a", "t1", T0, 6.5, 3.4, metadata={"battery_percent": odd}), Position(0, 3))
        assert "battery_percent" not in (messages.location_of(odd_state) or {})
    without = TechnicianState(
        tenant_id="a", technician_id="t1", fix=state.fix and replace(state.fix, battery_percent=None)
    )
    assert without == state  # the table does not keep it: equal states either way
