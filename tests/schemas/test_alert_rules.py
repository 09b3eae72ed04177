"""The alert rules' contract (``schemas/alert_rules.py``): every kind of condition round-trips through the topic's
JSON, and what is malformed or inconsistent is refused with the field named."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from schemas.alert_rules import (
    CONDITION_KINDS,
    AlertRuleDefined,
    AlertRuleRemoved,
    Arrival,
    Departure,
    EmailChannel,
    FlaggedFixes,
    LongStop,
    LowBattery,
    OfflineFor,
    OutsideWorkingHours,
    Overspeed,
    Technicians,
    WebhookChannel,
    decode_alert_rule_event,
    encode_alert_rule_event,
    rule_problems,
)

AT = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
CONDITIONS = [
    Overspeed(above_kmh=90, for_seconds=30),
    Overspeed(above_kmh=30, where="inside", geofence_ids=("depot",)),
    LongStop(minutes=45),
    OfflineFor(minutes=30),
    Arrival(geofence_ids=("site-1", "site-2")),
    Departure(),
    OutsideWorkingHours(time_zone="Africa/Lagos", days=("mon", "sat"), start="22:00", end="06:00"),
    LowBattery(below_percent=15),
    FlaggedFixes(above_percent=20, of_last=50),
]


def rule(**fields: Any) -> AlertRuleDefined:
    defaults: dict[str, Any] = {
        "tenant_id": "t",
        "rule_id": "r-1",
        "at": AT,
        "name": "Speeding",
        "condition": Overspeed(above_kmh=90),
    }
    return AlertRuleDefined(**(defaults | fields))


@pytest.mark.parametrize("condition", CONDITIONS, ids=lambda c: type(c).__name__)
def test_every_kind_of_rule_round_trips_through_the_topic(condition: Any) -> None:
    defined = rule(
        condition=condition,
        technicians=Technicians(ids=("tech-1", "tech-2")),
        channels=(WebhookChannel(endpoint_id="ops"), EmailChannel(to="dispatch@example.com")),
        quiet_seconds=600,
    )
    assert rule_problems(defined) == []
    value = encode_alert_rule_event(defined)
    assert decode_alert_rule_event(value) == defined
    assert msgspec.json.decode(value)["condition"]["kind"] in CONDITION_KINDS
    removed = AlertRuleRemoved(tenant_id="t", rule_id="r-1", at=AT)
    assert decode_alert_rule_event(encode_alert_rule_event(removed)) == removed


def test_the_kinds_listed_are_the_kinds_there_are() -> None:
    assert {msgspec.json.decode(msgspec.json.encode(c))["kind"] for c in CONDITIONS} == set(CONDITION_KINDS)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"condition": {"kind": "teleport"}}, "condition"),
        ({"condition": {"kind": "overspeed", "above_kmh": 2}}, "above_kmh"),
        ({"condition": {"kind": "overspeed", "above_kmh": 90, "limit": 1}}, "limit"),
        ({"condition": {"kind": "long_stop", "minutes": 0}}, "minutes"),
        ({"condition": {"kind": "outside_working_hours", "time_zone": "UTC", "start": "24:00"}}, "start"),
        ({"condition": {"kind": "outside_working_hours", "time_zone": "UTC", "days": ["someday"]}}, "days"),
        ({"condition": {"kind": "low_battery", "below_percent": 100}}, "below_percent"),
        ({"channels": [{"type": "email", "to": "not-an-address"}]}, "to"),
        ({"channels": [{"type": "email", "to": "a@b.co\r\nBcc: all@x.com"}]}, "to"),
        ({"channels": [{"type": "sms", "to": "+234"}]}, "channels"),
        ({"channels": [{"type": "webhook", "endpoint_id": f"e{i}"} for i in range(11)]}, "channels"),
        ({"technicians": {"ids": [f"t{i}" for i in range(1_001)]}}, "ids"),
        ({"quiet_seconds": -1}, "quiet_seconds"),
        ({"name": ""}, "name"),
    ],
)
def test_malformed_rules_are_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    wire = msgspec.to_builtins(rule()) | change
    with pytest.raises(msgspec.ValidationError, match=field):
        decode_alert_rule_event(msgspec.json.encode(wire))


@pytest.mark.parametrize(
    ("defined", "problem"),
    [
        (rule(condition=Overspeed(above_kmh=50, where="inside")), "condition.geofence_ids"),
        (rule(condition=Overspeed(above_kmh=50, geofence_ids=("depot",))), "condition.geofence_ids"),
        (rule(condition=OutsideWorkingHours(time_zone="UTC", start="09:00", end="09:00")), "condition.end"),
        (rule(condition=OutsideWorkingHours(time_zone="UTC", days=("mon", "mon"))), "condition.days"),
        (rule(technicians=Technicians(ids=("a",), status="on_job")), "technicians"),
        (rule(technicians=Technicians(ids=("a", "a"))), "technicians.ids"),
        (rule(channels=(EmailChannel(to="a@b.co"), EmailChannel(to="a@b.co"))), "channels"),
    ],
)
def test_inconsistent_rules_are_said_so_naming_the_field(defined: AlertRuleDefined, problem: str) -> None:
    problems = rule_problems(defined)
    assert len(problems) == 1 and problems[0].startswith(problem)
