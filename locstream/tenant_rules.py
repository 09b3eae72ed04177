"""The tenants' rules, from the rules topic (``schemas/tenant_rules.py``), followed from its beginning by every
ingest process (``locstream.compacted_topic``), for the limits by which it judges each fix (``domain/fix_quality.py``),
and by the derived-facts processor, for the thresholds of stops and trips (``domain/stays.py``).
A tenant that set none has the defaults. ``put`` returns once this process has applied the change.
"""

from __future__ import annotations

from datetime import UTC, datetime

from locstream.compacted_topic import Registry
from locstream.settings import KafkaSettings
from schemas.tenant_rules import (
    PresenceRules,
    QualityRules,
    StayRules,
    TenantRulesSet,
    decode_rules_event,
    encode_rules_event,
)

DEFAULT_QUALITY = QualityRules()
DEFAULT_STAYS = StayRules()
DEFAULT_PRESENCE = PresenceRules()


class TenantRulesRegistry(Registry[TenantRulesSet]):
    """The rules topic followed into one ``TenantRulesSet`` per tenant."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.by_tenant: dict[str, TenantRulesSet] = {}
        super().__init__(kafka, kafka.rules_topic, decode_rules_event)

    def fold(self, event: TenantRulesSet, value: bytes) -> None:
        self.by_tenant[event.tenant_id] = event

    def of(self, tenant_id: str) -> TenantRulesSet:
        """The tenant's rules (the defaults, stamped now, when it set none)."""
        held = self.by_tenant.get(tenant_id)
        return held if held is not None else TenantRulesSet(tenant_id=tenant_id, at=datetime.now(UTC))

    def quality(self, tenant_id: str) -> QualityRules:
        held = self.by_tenant.get(tenant_id)
        return held.quality if held is not None else DEFAULT_QUALITY

    def stays(self, tenant_id: str) -> StayRules:
        held = self.by_tenant.get(tenant_id)
        return held.stays if held is not None else DEFAULT_STAYS

    def presence(self, tenant_id: str) -> PresenceRules:
        held = self.by_tenant.get(tenant_id)
        return held.presence if held is not None else DEFAULT_PRESENCE

    async def put(self, rules: TenantRulesSet) -> None:
        """Set a tenant's rules (all of them: a section left out is the defaults); returns once applied here."""
        await self.table.append(rules.tenant_id.encode(), encode_rules_event(rules))
