"""A tenant's alert rules on the compacted topic ``alert-rules.v1`` (key = tenant id and rule id, value = JSON), set by
its admins and dispatchers through ``PUT /api/v1/field-service/alert-rules/{id}`` (docs/alerts.md); its webhook
endpoints on the same topic (key = tenant id, ``webhook_endpoint`` and endpoint id), set by its admins through
``PUT /api/v1/field-service/webhook-endpoints/{id}``. Compaction keeps
each rule's latest definition or removal, so every reader rebuilds a tenant's rules by reading the topic from its
beginning, as the fences' readers do.

A rule is a condition (``kind``: one of the ``Condition`` structs), the technicians it watches (all of them, a list,
or those of a status), the channels its alerts go to (webhook endpoints by id, e-mail addresses) and a quiet period:
once a rule has raised an alert for a technician, the same condition raises none for ``quiet_seconds`` after it
clears, so a condition that flickers (GPS jitter round a speed limit) raises one alert, not one per fix.
"""

from __future__ import annotations

import json
from typing import Annotated, ClassVar, Final, Literal

import msgspec
from msgspec import Meta, Struct

from schemas.events import LIMITS, AwareDatetime

Identifier = Annotated[str, Meta(**LIMITS["identifier"])]
FenceIds = Annotated[tuple[Identifier, ...], Meta(max_length=100)]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ClockTime = Annotated[str, Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]  # HH:MM, 00:00 to 23:59
# A mailbox as people type one; what a mail server accepts is its own affair (a refusal is a failed delivery).
EmailAddress = Annotated[str, Meta(pattern=r"^[^@\s<>,;]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$", max_length=254)]
MAX_CHANNELS: Final = 10
MAX_LISTED_TECHNICIANS: Final = 1_000


class _Condition(Struct, frozen=True, forbid_unknown_fields=True, gc=False, kw_only=True, tag_field="kind"):
    pass


class Overspeed(_Condition, frozen=True, gc=False, tag="overspeed"):
    """Faster than ``above_kmh`` for at least ``for_seconds`` (by the fixes' reported speed, else the speed between
    good fixes); only inside (or only outside) the ``geofence_ids`` when ``where`` says so. Clears once below it."""

    above_kmh: Annotated[float, Meta(ge=5, le=LIMITS["speed_kmh"]["le"])]
    for_seconds: Annotated[float, Meta(ge=0, le=3_600)] = 0.0
    where: Literal["anywhere", "inside", "outside"] = "anywhere"
    geofence_ids: FenceIds = ()


class LongStop(_Condition, frozen=True, gc=False, tag="long_stop"):
    """A stop (docs/stops-and-trips.md) longer than ``minutes``, outside every job site unless ``outside_job_sites``
    is false. Clears when the stop ends."""

    minutes: Annotated[float, Meta(ge=1, le=1_440)]
    outside_job_sites: bool = True


class OfflineFor(_Condition, frozen=True, gc=False, tag="offline"):
    """Offline (docs/online-offline.md) for longer than ``minutes``. Clears when the technician is back."""

    minutes: Annotated[float, Meta(ge=1, le=7 * 1_440)]


class Arrival(_Condition, frozen=True, gc=False, tag="arrival"):
    """An arrival at one of the ``geofence_ids`` (any job site when empty). An event, not a state: nothing clears."""

    geofence_ids: FenceIds = ()


class Departure(_Condition, frozen=True, gc=False, tag="departure"):
    """A departure from one of the ``geofence_ids`` (any job site when empty). An event: nothing clears."""

    geofence_ids: FenceIds = ()


class OutsideWorkingHours(_Condition, frozen=True, gc=False, tag="outside_working_hours"):
    """Moving (on a trip) outside the working hours: ``days`` from ``start`` to ``end`` in ``time_zone`` (an IANA
    name; an ``end`` before ``start`` runs past midnight). Clears when the trip ends or the hours begin."""

    time_zone: Annotated[str, Meta(min_length=1, max_length=64)]
    days: Annotated[tuple[Weekday, ...], Meta(min_length=1, max_length=7)] = ("mon", "tue", "wed", "thu", "fri")
    start: ClockTime = "08:00"
    end: ClockTime = "18:00"


class LowBattery(_Condition, frozen=True, gc=False, tag="low_battery"):
    """A battery below ``below_percent`` where the app reports one (``metadata.battery_percent``). Clears above it."""

    below_percent: Annotated[float, Meta(ge=1, le=99)]


class FlaggedFixes(_Condition, frozen=True, gc=False, tag="flagged_fixes"):
    """More than ``above_percent`` of the technician's last ``of_last`` fixes flagged by the quality rule
    (docs/fix-quality.md). Clears when the share is back below it."""

    above_percent: Annotated[float, Meta(ge=1, le=100)]
    of_last: Annotated[int, Meta(ge=10, le=1_000)] = 100


Condition = Overspeed | LongStop | OfflineFor | Arrival | Departure | OutsideWorkingHours | LowBattery | FlaggedFixes
CONDITION_KINDS: Final = (
    "overspeed",
    "long_stop",
    "offline",
    "arrival",
    "departure",
    "outside_working_hours",
    "low_battery",
    "flagged_fixes",
)


class Technicians(Struct, frozen=True, forbid_unknown_fields=True, gc=False, kw_only=True):
    """Whom a rule watches: the technicians ``ids``, or those of ``status``, or (neither) all of the tenant's."""

    ids: Annotated[tuple[Identifier, ...], Meta(max_length=MAX_LISTED_TECHNICIANS)] = ()
    status: Annotated[str, Meta(**LIMITS["status"])] | None = None


class _Channel(Struct, frozen=True, forbid_unknown_fields=True, gc=False, kw_only=True, tag_field="type"):
    pass


class WebhookChannel(_Channel, frozen=True, gc=False, tag="webhook"):
    """One of the tenant's webhook endpoints (``/api/v1/field-service/webhook-endpoints/{id}``), by id."""

    endpoint_id: Identifier


class EmailChannel(_Channel, frozen=True, gc=False, tag="email"):
    to: EmailAddress


Channel = WebhookChannel | EmailChannel


class _RuleEvent(Struct, frozen=True, forbid_unknown_fields=True, gc=False, kw_only=True, tag_field="type"):
    tenant_id: Identifier
    rule_id: Identifier
    at: AwareDatetime


class AlertRuleDefined(_RuleEvent, frozen=True, gc=False, tag="alert_rule_defined"):
    type: ClassVar[str] = "alert_rule_defined"
    name: Annotated[str, Meta(**LIMITS["name"])]
    condition: Condition
    technicians: Technicians = Technicians()
    channels: Annotated[tuple[Channel, ...], Meta(max_length=MAX_CHANNELS)] = ()
    quiet_seconds: Annotated[float, Meta(ge=0, le=86_400)] = 900.0
    enabled: bool = True


class AlertRuleRemoved(_RuleEvent, frozen=True, gc=False, tag="alert_rule_removed"):
    type: ClassVar[str] = "alert_rule_removed"


class WebhookSecret(Struct, frozen=True, forbid_unknown_fields=True, gc=False, kw_only=True):
    """One of an endpoint's signing secrets (``locstream/webhook_signing.py``): ``whsec_``, base64 of 32 bytes."""

    secret: Annotated[str, Meta(pattern=r"^whsec_[A-Za-z0-9+/]{43}=$")]
    created_at: AwareDatetime


class _EndpointEvent(Struct, frozen=True, forbid_unknown_fields=True, gc=False, kw_only=True, tag_field="type"):
    tenant_id: Identifier
    endpoint_id: Identifier
    at: AwareDatetime


class WebhookEndpointDefined(_EndpointEvent, frozen=True, gc=False, tag="webhook_endpoint_defined"):
    """Where a tenant's webhook alerts go: the URL (checked by ``locstream.outbound_policy`` when defined and again
    at each delivery), the body's shape (Standard Webhooks JSON, or what Slack's or Teams' incoming webhooks take),
    and its secrets: one, or two while it is rotated (the newest last). The topic is the only place they are kept;
    the API shows a secret once, when it is made."""

    type: ClassVar[str] = "webhook_endpoint_defined"
    url: Annotated[str, Meta(min_length=1, max_length=2_048)]
    secrets: Annotated[tuple[WebhookSecret, ...], Meta(min_length=1, max_length=2)]
    body: Literal["standard", "slack", "teams"] = "standard"
    description: Annotated[str, Meta(max_length=200)] | None = None


class WebhookEndpointRemoved(_EndpointEvent, frozen=True, gc=False, tag="webhook_endpoint_removed"):
    type: ClassVar[str] = "webhook_endpoint_removed"


AlertRuleEvent = AlertRuleDefined | AlertRuleRemoved | WebhookEndpointDefined | WebhookEndpointRemoved

_DECODER: Final[msgspec.json.Decoder[AlertRuleEvent]] = msgspec.json.Decoder(AlertRuleEvent)
_ENCODER: Final = msgspec.json.Encoder()


def rule_problems(rule: AlertRuleDefined) -> list[str]:
    """What is wrong with a rule beyond its fields' own bounds, each naming its field; empty: nothing. (The time
    zone's name is checked against the zone database by the API: ``locstream``'s, not a contract's, concern.)"""
    problems: list[str] = []
    condition = rule.condition
    if isinstance(condition, Overspeed) and (condition.where == "anywhere") != (not condition.geofence_ids):
        problems.append("condition.geofence_ids: give them with where inside or outside, and only then")
    if isinstance(condition, OutsideWorkingHours):
        if condition.start == condition.end:
            problems.append("condition.end: the same time as start leaves no working hours")
        if len(set(condition.days)) != len(condition.days):
            problems.append("condition.days: a day given twice")
    if rule.technicians.ids and rule.technicians.status is not None:
        problems.append("technicians: ids or status, not both")
    if len(set(rule.technicians.ids)) != len(rule.technicians.ids):
        problems.append("technicians.ids: an id given twice")
    if len(set(rule.channels)) != len(rule.channels):
        problems.append("channels: a channel given twice")
    return problems


def rule_key(tenant_id: str, rule_id: str) -> bytes:
    """The record key: unambiguous whatever characters the ids hold (compaction keeps each rule's latest record)."""
    return json.dumps([tenant_id, rule_id], separators=(",", ":")).encode()


def endpoint_key(tenant_id: str, endpoint_id: str) -> bytes:
    """An endpoint's record key: three elements, never one of a rule's two."""
    return json.dumps([tenant_id, "webhook_endpoint", endpoint_id], separators=(",", ":")).encode()


def decode_alert_rule_event(value: bytes) -> AlertRuleEvent:
    """One record of the alert rules topic; ``msgspec.MsgspecError`` when it is not one."""
    return _DECODER.decode(value)


def encode_alert_rule_event(event: AlertRuleEvent) -> bytes:
    return _ENCODER.encode(event)
