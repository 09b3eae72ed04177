"""The tenants' alert rules and webhook endpoints, from the alert rules topic (``schemas/alert_rules.py``), followed
from its beginning by every process that needs them (``locstream.compacted_topic``): the ingest API, which defines
them. ``put`` and ``remove`` (and their endpoint forms) return once this process has applied the change
(docs/alerts.md).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeVar

from locstream.compacted_topic import Registry
from locstream.settings import KafkaSettings
from schemas.alert_rules import (
    AlertRuleDefined,
    AlertRuleEvent,
    AlertRuleRemoved,
    WebhookEndpointDefined,
    WebhookEndpointRemoved,
    decode_alert_rule_event,
    encode_alert_rule_event,
    endpoint_key,
    rule_key,
)

T = TypeVar("T")


class AlertRulesRegistry(Registry[AlertRuleEvent]):
    """The alert rules topic folded into each tenant's rules by id."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.by_tenant: dict[str, dict[str, AlertRuleDefined]] = {}
        self.endpoints: dict[str, dict[str, WebhookEndpointDefined]] = {}
        super().__init__(kafka, kafka.alert_rules_topic, decode_alert_rule_event)

    def fold(self, event: AlertRuleEvent, value: bytes) -> None:
        if isinstance(event, AlertRuleDefined):
            self.by_tenant.setdefault(event.tenant_id, {})[event.rule_id] = event
        elif isinstance(event, AlertRuleRemoved):
            _drop(self.by_tenant, event.tenant_id, event.rule_id)
        elif isinstance(event, WebhookEndpointDefined):
            self.endpoints.setdefault(event.tenant_id, {})[event.endpoint_id] = event
        else:
            _drop(self.endpoints, event.tenant_id, event.endpoint_id)

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

    def endpoint(self, tenant_id: str, endpoint_id: str) -> WebhookEndpointDefined | None:
        return self.endpoints.get(tenant_id, {}).get(endpoint_id)

    def endpoints_of(self, tenant_id: str) -> list[WebhookEndpointDefined]:
        return [endpoint for _, endpoint in sorted(self.endpoints.get(tenant_id, {}).items())]

    async def put_endpoint(self, endpoint: WebhookEndpointDefined) -> None:
        """Define (or redefine) a webhook endpoint; returns once this process has applied it."""
        key = endpoint_key(endpoint.tenant_id, endpoint.endpoint_id)
        await self.table.append(key, encode_alert_rule_event(endpoint))

    async def remove_endpoint(self, tenant_id: str, endpoint_id: str) -> bool:
        if self.endpoint(tenant_id, endpoint_id) is None:
            return False
        event = WebhookEndpointRemoved(tenant_id=tenant_id, endpoint_id=endpoint_id, at=datetime.now(UTC))
        await self.table.append(endpoint_key(tenant_id, endpoint_id), encode_alert_rule_event(event))
        return True


def _drop(table: dict[str, dict[str, T]], tenant_id: str, key: str) -> None:
    held = table.get(tenant_id)
    if held is not None:
        held.pop(key, None)
        if not held:
            del table[tenant_id]
