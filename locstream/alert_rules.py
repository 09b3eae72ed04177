"""The tenants' alert rules, from the alert rules topic (``schemas/alert_rules.py``), followed from its beginning by
every process that needs them (``locstream.compacted_topic``): the ingest API, which defines them. ``put`` and
``remove`` return once this process has applied the change (docs/alerts.md).
"""

from __future__ import annotations

from datetime import UTC, datetime

from locstream.compacted_topic import Registry
from locstream.settings import KafkaSettings
from schemas.alert_rules import (
    AlertRuleDefined,
    AlertRuleEvent,
    AlertRuleRemoved,
    decode_alert_rule_event,
    encode_alert_rule_event,
    rule_key,
)


class AlertRulesRegistry(Registry[AlertRuleEvent]):
    """The alert rules topic folded into each tenant's rules by id."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.by_tenant: dict[str, dict[str, AlertRuleDefined]] = {}
        super().__init__(kafka, kafka.alert_rules_topic, decode_alert_rule_event)

    def fold(self, event: AlertRuleEvent, value: bytes) -> None:
        held = self.by_tenant.setdefault(event.tenant_id, {})
        if isinstance(event, AlertRuleDefined):
            held[event.rule_id] = event
        else:
            held.pop(event.rule_id, None)
            if not held:
                del self.by_tenant[event.tenant_id]

    def of(self, tenant_id: str) -> list[AlertRuleDefined]:
        """The tenant's rules, by id."""
        return [rule for _, rule in sorted(self.by_tenant.get(tenant_id, {}).items())]

    def get(self, tenant_id: str, rule_id: str) -> AlertRuleDefined | None:
        return self.by_tenant.get(tenant_id, {}).get(rule_id)

    def count(self, tenant_id: str) -> int:
        return len(self.by_tenant.get(tenant_id, {}))

    async def put(self, rule: AlertRuleDefined) -> None:
        """Define (or redefine) a rule; returns once this process has applied it."""
        await self.table.append(rule_key(rule.tenant_id, rule.rule_id), encode_alert_rule_event(rule))

    async def remove(self, tenant_id: str, rule_id: str) -> bool:
        """False when the tenant has no such rule (another tenant's id is the same as none)."""
        if self.get(tenant_id, rule_id) is None:
            return False
        event = AlertRuleRemoved(tenant_id=tenant_id, rule_id=rule_id, at=datetime.now(UTC))
        await self.table.append(rule_key(tenant_id, rule_id), encode_alert_rule_event(event))
        return True
