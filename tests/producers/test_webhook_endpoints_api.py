"""A tenant's webhook endpoints through the ingest API, on a real broker: only an admin defines, rotates and removes
them; a secret is answered once, when made, and never again (nor logged); a rotation keeps the newest old secret
valid until it is ended; URLs the server must not call are refused with the reason and nothing on the topic; another
tenant's endpoints untouchable. No request is ever made to the URLs (the API resolves no name)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from schemas.alert_rules import WebhookEndpointDefined, decode_alert_rule_event
from schemas.claims import Role
from tests.support.kafka_io import compacted_records, compacted_values
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

ENDPOINTS = "/api/v1/field-service/webhook-endpoints"
DESK = {"url": "https://hooks.example.com/locstream?desk=1", "body": "standard", "description": "Dispatch desk"}


async def test_an_admin_defines_rotates_and_removes_and_a_secret_is_shown_once(stack: Stack) -> None:
    api = await stack.start("producers")

    def as_(role: Role, tenant: str = "tenant-a") -> dict[str, str]:
        return {"Authorization": f"Bearer {stack.token(tenant, role)}"}

    expired = stack.sign({"sub": "x", "tenant_id": "tenant-a", "roles": ["admin"], "exp": int(time.time()) - 600})
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as http:
        for headers, code in (
            ({}, 401),
            ({"Authorization": f"Bearer {expired}"}, 401),
            (as_(Role.DISPATCHER), 403),
            (as_(Role.ANALYST), 403),
            (as_(Role.TECHNICIAN), 403),
        ):
            assert (await http.put(f"{ENDPOINTS}/desk", json=DESK, headers=headers)).status_code == code
        made = await http.put(f"{ENDPOINTS}/desk", json=DESK, headers=as_(Role.ADMIN))
        assert made.status_code == 200, made.text
        first = made.json()["secret"]
        assert first.startswith("whsec_") and len(made.json()["secrets"]) == 1
        shown = (await http.get(f"{ENDPOINTS}/desk", headers=as_(Role.DISPATCHER))).json()
        listed = (await http.get(ENDPOINTS, headers=as_(Role.ADMIN))).json()
        assert "secret" not in shown and first not in str(shown) and first not in str(listed)
        assert shown["url"] == DESK["url"] and [e["endpoint_id"] for e in listed] == ["desk"]

        redefined = await http.put(f"{ENDPOINTS}/desk", json={**DESK, "body": "slack"}, headers=as_(Role.ADMIN))
        assert redefined.status_code == 200 and "secret" not in redefined.json()  # the secret is kept, not shown

        assert (await http.post(f"{ENDPOINTS}/desk/secrets", headers=as_(Role.DISPATCHER))).status_code == 403
        rotated = await http.post(f"{ENDPOINTS}/desk/secrets", headers=as_(Role.ADMIN))
        assert rotated.status_code == 200
        second = rotated.json()["secret"]
        assert second != first and len(rotated.json()["secrets"]) == 2
        again = (await http.post(f"{ENDPOINTS}/desk/secrets", headers=as_(Role.ADMIN))).json()["secret"]
        assert (await http.delete(f"{ENDPOINTS}/desk/secrets/previous", headers=as_(Role.ADMIN))).status_code == 204
        assert (await http.delete(f"{ENDPOINTS}/desk/secrets/previous", headers=as_(Role.ADMIN))).status_code == 404

        # Another tenant: none of it.
        other = as_(Role.ADMIN, "tenant-b")
        assert (await http.get(ENDPOINTS, headers=other)).json() == []
        for method, path in (("GET", "desk"), ("DELETE", "desk"), ("POST", "desk/secrets")):
            answer = await http.request(method, f"{ENDPOINTS}/{path}", headers=other)
            assert answer.status_code == 404, (method, path)

        assert (await http.delete(f"{ENDPOINTS}/desk", headers=as_(Role.DISPATCHER))).status_code == 403
        assert (await http.delete(f"{ENDPOINTS}/desk", headers=as_(Role.ADMIN))).status_code == 204
        assert (await http.get(f"{ENDPOINTS}/desk", headers=as_(Role.ADMIN))).status_code == 404

    # The topic holds the secrets (it is the only place they are kept): after the rotations, the newest only.
    values = await compacted_values(stack.kafka, stack.kafka.alert_rules_topic)
    defined = [event for event in map(decode_alert_rule_event, values) if isinstance(event, WebhookEndpointDefined)]
    assert [[held.secret for held in event.secrets] for event in defined] == [
        [first],
        [first],
        [first, second],
        [second, again],
        [again],
    ]
    logs = "".join(path.read_text() for path in stack.log_dir.glob("producers-*.log"))
    assert all(secret not in logs for secret in (first, second, again))


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/hook", "https only"),
        ("https://127.0.0.1/hook", "loopback"),
        ("https://[::1]/hook", "loopback"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://2130706433/", "loopback"),
        ("https://10.0.0.1/", "public internet"),
        ("https://user:pass@hooks.example.com/", "credentials"),
        ("file:///etc/passwd", "https only"),
    ],
)
async def test_urls_the_server_must_not_call_are_refused_and_nothing_is_written(
    stack: Stack, url: str, reason: str
) -> None:
    api = await stack.start("producers")
    headers = {"Authorization": f"Bearer {stack.token('tenant-a', Role.ADMIN)}"}
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as http:
        answer = await http.put(f"{ENDPOINTS}/e", json={"url": url}, headers=headers)
    assert answer.status_code == 422 and reason in answer.json()["message"], answer.text
    assert answer.json()["message"].startswith("url:")
    assert await compacted_records(stack.kafka, stack.kafka.alert_rules_topic) == 0


async def test_an_operators_allow_list_and_http_switch_let_a_local_receiver_in(stack: Stack) -> None:
    env = {"LOCSTREAM_OUTBOUND_ALLOW_NETWORKS": '["127.0.0.0/8"]', "LOCSTREAM_OUTBOUND_ALLOW_HTTP": "true"}
    api = await stack.start("producers", env=env)
    headers = {"Authorization": f"Bearer {stack.token('tenant-a', Role.ADMIN)}"}
    body: dict[str, Any] = {"url": "http://127.0.0.1:9/hook"}
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as http:
        assert (await http.put(f"{ENDPOINTS}/local", json=body, headers=headers)).status_code == 200
        refused = await http.put(f"{ENDPOINTS}/other", json={"url": "http://10.0.0.1/"}, headers=headers)
        assert refused.status_code == 422 and "public internet" in refused.text
