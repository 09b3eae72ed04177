"""A webhook delivery's signature, pure: the Standard Webhooks scheme (standardwebhooks.com), which Svix, Zapier and
others verify with a few lines or a library of theirs (docs/alerts.md has a receiver's snippet).

Each delivery carries three headers: ``webhook-id`` (the idempotency key: the alert's event id, the same on every
retry), ``webhook-timestamp`` (Unix seconds of this attempt) and ``webhook-signature``: ``v1,`` and the base64
HMAC-SHA256 of ``"{id}.{timestamp}.{body}"`` under the endpoint's secret. While a secret is rotated the endpoint
has two, and the header carries one signature per secret, space-separated: a receiver that knows either accepts. A
receiver refuses a timestamp further than ``TOLERANCE_SECONDS`` from its clock, so a captured delivery cannot be
replayed later.

A secret is ``whsec_`` and the base64 of 32 random bytes; the API shows it once, when it is made, and never again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from typing import Final

SECRET_PREFIX: Final = "whsec_"
TOLERANCE_SECONDS: Final = 300
SIGNATURE_VERSION: Final = "v1"


class InvalidSignature(ValueError):
    """A delivery whose headers do not prove it came from the endpoint's sender, now."""


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key a ``whsec_`` secret stands for."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX}")
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


def signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def signed_headers(keys: Sequence[bytes], message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers of a delivery of ``body``, signed with every key the endpoint has now (two while rotating)."""
    if not keys:
        raise ValueError("an endpoint without a secret")
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(key, message_id, timestamp, body) for key in keys),
    }


def verify(keys: Sequence[bytes], headers: Mapping[str, str], body: bytes, now: float) -> str:
    """What a receiver does: the delivery's id when one of its signatures is by one of ``keys`` and its timestamp
    within ``TOLERANCE_SECONDS`` of ``now``; ``InvalidSignature`` otherwise. (locstream's tests receive with it, and
    with the reference library.)"""
    lowered = {name.lower(): value for name, value in headers.items()}
    try:
        message_id, stamp, signatures = (
            lowered["webhook-id"],
            lowered["webhook-timestamp"],
            lowered["webhook-signature"],
        )
        timestamp = int(stamp)
    except (KeyError, ValueError):
        raise InvalidSignature("missing or malformed webhook headers") from None
    if abs(now - timestamp) > TOLERANCE_SECONDS:
        raise InvalidSignature("timestamp outside the tolerance: a replay, or a clock far off")
    expected = [signature(key, message_id, timestamp, body) for key in keys]
    for given in signatures.split(" "):
        if any(hmac.compare_digest(given, wanted) for wanted in expected):
            return message_id
    raise InvalidSignature("no signature by a known secret")
