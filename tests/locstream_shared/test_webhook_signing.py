"""Webhook signatures (``locstream.webhook_signing``) as the Standard Webhooks reference library verifies them,
rotation with two secrets, and what a receiver refuses: another secret, a changed body or id, a stale or future
timestamp."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from locstream.webhook_signing import (
    TOLERANCE_SECONDS,
    InvalidSignature,
    new_secret,
    secret_key,
    signed_headers,
    verify,
)

BODY = json.dumps({"type": "alert_raised", "alert_id": "a-1", "technician_id": "tech-7"}).encode()


def test_the_reference_library_verifies_what_is_signed_and_either_secret_works_while_rotating() -> None:
    old, new = new_secret(), new_secret()
    assert old != new and old.startswith("whsec_") and len(secret_key(old)) == 32
    now = int(time.time())
    headers = signed_headers([secret_key(old), secret_key(new)], "msg-0001", now, BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)
        assert verify([secret_key(secret)], headers, BODY, now) == "msg-0001"
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)
    with pytest.raises(InvalidSignature, match="no signature"):
        verify([secret_key(new_secret())], headers, BODY, now)


def test_we_verify_what_the_reference_library_signs() -> None:
    secret = new_secret()
    at = datetime.now(UTC).replace(microsecond=0)
    headers = {
        "webhook-id": "msg-0002",
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign("msg-0002", at, BODY),
    }
    assert verify([secret_key(secret)], headers, BODY, at.timestamp()) == "msg-0002"


@pytest.mark.parametrize(
    "tamper",
    ["body", "id", "timestamp", "stale", "future", "missing", "garbage"],
)
def test_a_receiver_refuses_a_delivery_that_was_changed_or_replayed(tamper: str) -> None:
    key = secret_key(new_secret())
    now = int(time.time())
    headers = signed_headers([key], "msg-0003", now, BODY)
    body, checked_at = BODY, float(now)
    if tamper == "body":
        body = BODY.replace(b"tech-7", b"tech-8")
    elif tamper == "id":
        headers["webhook-id"] = "msg-0004"
    elif tamper == "timestamp":
        headers["webhook-timestamp"] = str(now + 1)
    elif tamper == "stale":
        checked_at = now + TOLERANCE_SECONDS + 1
    elif tamper == "future":
        checked_at = now - TOLERANCE_SECONDS - 1
    elif tamper == "missing":
        del headers["webhook-signature"]
    else:
        headers["webhook-signature"] = "v1,not-base64 v2,whatever"
    with pytest.raises(InvalidSignature):
        verify([key], headers, body, checked_at)


def test_a_secret_must_be_one_and_an_endpoint_must_have_one() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        secret_key("sk_live_123")
    with pytest.raises(ValueError, match="without a secret"):
        signed_headers([], "msg", 0, BODY)


def test_the_receivers_snippet_in_the_docs_verifies_a_delivery_and_refuses_a_changed_one() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "alerts.md").read_text()
    snippet = docs.split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict[str, Any] = {}
    exec(compile(snippet, "docs/alerts.md", "exec"), scope)  # the receiver's code as a reader copies it
    secret = new_secret()
    headers = signed_headers([secret_key(new_secret()), secret_key(secret)], "msg-0005", int(time.time()), BODY)
    assert scope["verify"](secret, headers, BODY) == "msg-0005"
    with pytest.raises(ValueError, match="bad signature"):
        scope["verify"](secret, headers, BODY + b" ")
