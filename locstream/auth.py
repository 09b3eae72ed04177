"""Issuing and verifying locstream JWTs (HS256, algorithms pinned, claims required)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jwt
from pydantic import ValidationError

from locstream.settings import AuthSettings
from schemas.claims import Role, TokenClaims

ALGORITHM = "HS256"
_REQUIRED = ["exp", "iat", "tenant_id", "role"]
MAX_TOKEN_BYTES = 8 * 1024


class AuthError(Exception):
    """The token is missing, malformed, forged, expired or lacks a claim; ``reason`` is safe to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def verify_token(token: str | None, settings: AuthSettings) -> TokenClaims:
    if not token:
        raise AuthError("missing token")
    if len(token) > MAX_TOKEN_BYTES:
        raise AuthError("token too large")
    try:
        required = _REQUIRED + ["iss"] * bool(settings.jwt_issuer) + ["aud"] * bool(settings.jwt_audience)
        payload: dict[str, Any] = jwt.decode(
            token,
            settings.secret,
            algorithms=[ALGORITHM],
            options={"require": required},
            leeway=settings.jwt_leeway_seconds,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"invalid token: {exc}") from exc
    if "sub" not in payload and "user_id" in payload:  # the seed's tokens name the subject user_id
        payload["sub"] = payload["user_id"]
    try:
        return TokenClaims.model_validate(payload)
    except ValidationError as exc:
        fields = ", ".join(str(err["loc"][0]) for err in exc.errors() if err["loc"])
        raise AuthError(f"invalid claims: {fields or 'malformed'}") from exc


class VerifiedTokens:
    """Tokens verified lately, so a device posting every few seconds is not HMAC-checked and parsed each time.

    A token's claims cannot change (its signature covers them), so only its expiry is checked again on each use;
    the secret is fixed for the process's life. Bounded: the oldest entries go first.
    """

    def __init__(self, settings: AuthSettings, capacity: int = 10_000, clock: Callable[[], float] = time.time) -> None:
        self.settings, self.capacity, self.clock = settings, capacity, clock
        self._claims: dict[str, TokenClaims] = {}

    def verify(self, token: str | None) -> TokenClaims:
        if token:
            claims = self._claims.get(token)
            if claims is not None:
                if claims.exp + self.settings.jwt_leeway_seconds > self.clock():
                    return claims
                del self._claims[token]
        claims = verify_token(token, self.settings)
        assert token is not None  # verify_token refuses a missing one
        if len(self._claims) >= self.capacity:
            del self._claims[next(iter(self._claims))]
        self._claims[token] = claims
        return claims


def issue_token(settings: AuthSettings, *, tenant_id: str, sub: str, role: Role, ttl_seconds: int = 3600) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": sub,
        "tenant_id": tenant_id,
        "role": role.value,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.secret, algorithm=ALGORITHM)
