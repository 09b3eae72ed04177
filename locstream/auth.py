"""Verifying every token a service takes (``TokenVerifier``: HS256 with a shared secret, or an identity
provider's RS256/ES256 keys from its JWKS, ``locstream.jwks``), and issuing HS256 tokens for development.

Algorithms are pinned (HS256 with the secret; with a JWKS, the configured ones, each fitting its key), ``exp`` and
``iat`` are required, ``iss`` and ``aud`` when configured. The tenant and roles are read by the claim mapping
(``locstream.claim_mapping``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import jwt
from jwt import PyJWK

from locstream.claim_mapping import ClaimError, ClaimMapping
from locstream.jwks import MAX_KID_CHARS, JwksKeys, UnavailableKeysError, UnknownKeyError, secure_enough
from locstream.settings import AuthSettings
from schemas.claims import Role, TokenClaims

log = logging.getLogger(__name__)

ALGORITHM = "HS256"
_REQUIRED = ["exp", "iat"]
MAX_TOKEN_BYTES = 8 * 1024
KEYS_UNAVAILABLE = "the identity provider's signing keys are unavailable"  # the provider's fault, not the client's


class AuthError(Exception):
    """The token is missing, malformed, forged, expired or lacks a claim; ``reason`` is safe to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _bounded(token: str | None) -> str:
    if not token:
        raise AuthError("missing token")
    if len(token) > MAX_TOKEN_BYTES:
        raise AuthError("token too large")
    return token


def _decode(token: str, key: str | PyJWK, algorithm: str, settings: AuthSettings) -> dict[str, Any]:
    required = _REQUIRED + ["iss"] * bool(settings.jwt_issuer) + ["aud"] * bool(settings.jwt_audience)
    try:
        payload: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            options={"require": required},
            leeway=settings.jwt_leeway_seconds,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"invalid token: {exc}") from exc
    return payload


def claim_mapping(settings: AuthSettings) -> ClaimMapping:
    return ClaimMapping(settings.jwt_tenant_claim, settings.jwt_roles_claim, settings.role_map)


def _mapped(payload: dict[str, Any], mapping: ClaimMapping) -> TokenClaims:
    try:
        return mapping.claims(payload)
    except ClaimError as exc:
        raise AuthError(str(exc)) from exc


def token_header(token: str) -> tuple[str, str]:
    """The ``alg`` and ``kid`` of a token's header (unverified: they only choose the key); ``AuthError`` otherwise."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"invalid token: {exc}") from exc
    alg, kid = header.get("alg"), header.get("kid")
    if not isinstance(alg, str):
        raise AuthError("invalid token: no algorithm")
    if not isinstance(kid, str) or not kid:
        raise AuthError("invalid token: no key id (kid)")
    if len(kid) > MAX_KID_CHARS:
        raise AuthError("invalid token: key id (kid) too long")
    return alg, kid


class TokenVerifier:
    """Verifies every token a service takes: HS256 with the secret, or the identity provider's keys (JWKS).

    Tokens verified lately are remembered, so a device posting every few seconds is not checked and parsed each
    time: a token's claims cannot change (its signature covers them), so only its expiry is checked again on each
    use. Bounded: the oldest entries go first.
    """

    def __init__(
        self,
        settings: AuthSettings,
        capacity: int = 10_000,
        clock: Callable[[], float] = time.time,
        keys: JwksKeys | None = None,
    ) -> None:
        self.settings, self.capacity, self.clock = settings, capacity, clock
        if keys is None and settings.jwt_jwks_url is not None:
            keys = JwksKeys(
                settings.jwt_jwks_url,
                settings.algorithms,
                timeout=settings.jwt_jwks_timeout_seconds,
                refetch_interval=settings.jwt_jwks_refetch_seconds,
                max_age=settings.jwt_jwks_max_age_seconds,
            )
        self.keys = keys
        self.mapping = claim_mapping(settings)
        self._claims: dict[str, TokenClaims] = {}
        if keys is not None and not secure_enough(keys.url):
            log.warning("the JWKS is fetched over plain HTTP from %s: anyone on the path could forge tokens", keys.url)

    def knows(self, token: str | None) -> bool:
        """Whether ``token`` was verified lately and has not expired: ``verify`` will take it without checking it."""
        claims = self._claims.get(token) if token else None
        return claims is not None and claims.exp + self.settings.jwt_leeway_seconds > self.clock()

    async def verify(self, token: str | None) -> TokenClaims:
        """The token's claims; ``AuthError`` with a reason safe to show."""
        if token:
            claims = self._claims.get(token)
            if claims is not None:
                if claims.exp + self.settings.jwt_leeway_seconds > self.clock():
                    return claims
                del self._claims[token]
        bounded = _bounded(token)
        if self.keys is None:
            claims = _mapped(_decode(bounded, self.settings.secret, ALGORITHM, self.settings), self.mapping)
        else:
            claims = _mapped(await self._decode_with_jwks(bounded, self.keys), self.mapping)
        if len(self._claims) >= self.capacity:
            del self._claims[next(iter(self._claims))]
        self._claims[bounded] = claims
        return claims

    async def _decode_with_jwks(self, token: str, keys: JwksKeys) -> dict[str, Any]:
        alg, kid = token_header(token)
        try:
            key = await keys.signing_key(kid, alg)
        except UnknownKeyError as exc:
            raise AuthError(f"invalid token: {exc.reason}") from exc
        except UnavailableKeysError as exc:
            raise AuthError(KEYS_UNAVAILABLE) from exc
        return _decode(token, key, alg, self.settings)


def issue_token(settings: AuthSettings, *, tenant_id: str, sub: str, role: Role, ttl_seconds: int = 3600) -> str:
    """An HS256 token (development, tests, simple deployments); the tenant and role under the mapped claims."""
    if settings.jwt_jwks_url is not None:
        raise AuthError("tokens come from the identity provider (LOCSTREAM_JWT_JWKS_URL is set)")
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": sub,
        settings.jwt_tenant_claim: tenant_id,
        settings.jwt_roles_claim: role.value,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.secret, algorithm=ALGORITHM)
