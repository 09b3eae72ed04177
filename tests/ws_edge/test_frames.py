"""The edge's hand-encoded frames conform to the protocol models in ``schemas.ws`` (the contract)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from projector.apply import Fix, Position, TechnicianState
from schemas.ws import Connected, InitialState, LocationUpdate, Pong
from ws_edge import frames

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
    location = frames.location_of(STATE)
    assert location is not None
    update = LocationUpdate.model_validate_json(frames.location_update(location))
    assert update.data.technician_name == "Ada" and update.data.last_update == STATE.fix.recorded_at  # type: ignore[union-attr]
    assert InitialState.model_validate_json(frames.initial_state([location])).data == [update.data]
    assert Connected.model_validate_json(frames.connected("c1", "a")).tenant_id == "a"
    assert Pong.model_validate_json(frames.PONG).type == "pong"


def test_times_are_written_in_utc_with_z_as_the_seed_did() -> None:
    location = frames.location_of(STATE)
    assert location is not None
    assert json.loads(frames.location_update(location))["data"]["last_update"] == "2026-11-26T08:30:00Z"


def test_a_technician_without_a_position_is_not_on_the_map() -> None:
    assert frames.location_of(TechnicianState(tenant_id="a", technician_id="t2")) is None


def test_a_technician_whose_last_fix_is_older_than_the_threshold_is_stale_and_keeps_its_status() -> None:
    assert STATE.fix is not None
    just_after = STATE.fix.recorded_at + timedelta(seconds=1)
    older = frames.location_of(STATE, stale_before=just_after)
    within = frames.location_of(STATE, stale_before=STATE.fix.recorded_at)
    assert older is not None and older["stale"] is True and older["status"] == "on_job"
    assert within is not None and within["stale"] is False
