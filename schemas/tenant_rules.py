"""A tenant's rules on the compacted topic ``tenant-rules.v1`` (key = tenant id, value = JSON): the limits by which its
fixes are judged (``domain/fix_quality.py``) and its stops and trips found (``domain/stays.py``) and when its
technicians are offline (``domain/presence.py``). Compaction keeps each tenant's latest set; a tenant that never set
any has the defaults. An admin sets them through the ingest API (``PUT /api/v1/field-service/rules``).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Final

import msgspec
from msgspec import Meta, Struct

from schemas.events import DEFAULT_MAX_ACCURACY_METERS, DEFAULT_MAX_SPEED_KMH, LIMITS, AwareDatetime

Identifier = Annotated[str, Meta(**LIMITS["identifier"])]
# An accuracy limit of a metre or less would flag every fix of a phone; one above the schema's bound would flag none.
MAX_ACCURACY_LIMITS: Final = {"ge": 1, "le": LIMITS["accuracy_meters"]["le"]}
# Walking pace at the least (a tenant of pedestrians); the schema's bound on a reported speed at the most.
MAX_SPEED_LIMITS: Final = {"ge": 5, "le": LIMITS["speed_kmh"]["le"]}


class QualityRules(Struct, frozen=True, forbid_unknown_fields=True, gc=False, kw_only=True):
    """A fix worse than ``max_accuracy_meters`` is flagged ``accuracy``; one that would take a speed above
    ``max_speed_kmh`` from the last good fix is flagged ``jump``."""

    max_accuracy_meters: Annotated[float, Meta(**MAX_ACCURACY_LIMITS)] = DEFAULT_MAX_ACCURACY_METERS
    max_speed_kmh: Annotated[float, Meta(**MAX_SPEED_LIMITS)] = DEFAULT_MAX_SPEED_KMH


class StayRules(Struct, frozen=True, forbid_unknown_fields=True, gc=False, kw_only=True):
    """Stops and trips (``domain/stays.py``): a stop is a stay within ``stop_radius_meters`` of a fix for at least
    ``stop_min_seconds``; a gap in the data longer than ``gap_seconds`` with less displacement than the radius is a
    stay; a move away from a stop is a trip once it takes the technician ``min_trip_meters`` from it."""

    stop_radius_meters: Annotated[float, Meta(ge=10, le=5_000)] = 100.0
    stop_min_seconds: Annotated[float, Meta(ge=30, le=86_400)] = 300.0
    gap_seconds: Annotated[float, Meta(ge=60, le=86_400)] = 900.0
    min_trip_meters: Annotated[float, Meta(ge=10, le=100_000)] = 500.0


class PresenceRules(Struct, frozen=True, forbid_unknown_fields=True, gc=False, kw_only=True):
    """A technician is offline after ``offline_seconds`` without a good fix (``domain/presence.py``)."""

    offline_seconds: Annotated[float, Meta(ge=10, le=7 * 86_400)] = 600.0


class TenantRulesSet(Struct, frozen=True, forbid_unknown_fields=True, gc=False, kw_only=True, tag="tenant_rules_set"):
    type: ClassVar[str] = "tenant_rules_set"
    tenant_id: Identifier
    at: AwareDatetime
    quality: QualityRules = QualityRules()
    stays: StayRules = StayRules()
    presence: PresenceRules = PresenceRules()


_DECODER: Final[msgspec.json.Decoder[TenantRulesSet]] = msgspec.json.Decoder(TenantRulesSet)
_ENCODER: Final = msgspec.json.Encoder()


def decode_rules_event(value: bytes) -> TenantRulesSet:
    """One record of the rules topic; ``msgspec.MsgspecError`` when it is not one."""
    return _DECODER.decode(value)


def encode_rules_event(event: TenantRulesSet) -> bytes:
    return _ENCODER.encode(event)
