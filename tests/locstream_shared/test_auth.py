"""Token verification in HS256 mode: pinned HS256, required claims, the seed's user_id, secrets required outside
dev, the claim mapping applied to HS256 tokens too (the JWKS mode: test_jwks_auth.py)."""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest
from pydantic import ValidationError

from locstream.auth import AuthError, TokenVerifier, issue_token
from locstream.settings import DEV_JWT_SECRET, AuthSettings
from schemas.claims import Role, TokenClaims

SECRET = "unit-test-secret-" * 4  # 68 bytes: long enough for HS512 too
SETTINGS = AuthSettings(jwt_secret=SECRET)


def verify_token(token: str | None, settings: AuthSettings) -> TokenClaims:
    """Through the services' one path (``TokenVerifier``), a fresh one each time: nothing remembered between cases."""
    return asyncio.run(TokenVerifier(settings).verify(token))


def encode(claims: dict[str, object], key: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def base_claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    # Tokens are built at collection time, minutes before their test runs: a day of validity outlives the suite.
    claims: dict[str, object] = {"sub": "u1", "tenant_id": "t1", "role": "dispatcher", "iat": now, "exp": now + 86_400}
    claims.update(overrides)
    return claims


def test_issued_tokens_verify_to_their_claims() -> None:
    claims = verify_token(issue_token(SETTINGS, tenant_id="t1", sub="u1", role=Role.ANALYST), SETTINGS)
    assert (claims.tenant_id, claims.sub, claims.roles) == ("t1", "u1", frozenset({Role.ANALYST}))


def test_the_seeds_user_id_stands_in_for_sub() -> None:
    claims = base_claims(user_id="seed-user")
    del claims["sub"]
    assert verify_token(encode(claims), SETTINGS).sub == "seed-user"


# Tokens built at collection time carry the clock (iat, exp): each case is named by its reason, so that every
# process collects the same names (pytest numbers the repeated ones).
BAD_TOKENS: list[tuple[str | None, str]] = [
    (None, "missing token"),
    ("", "missing token"),
    ("a.b.c", "invalid token"),
    (encode(base_claims(exp=int(time.time()) - 5)), "token expired"),
    (encode(base_claims(), key="some-other-secret-some-other-secret"), "invalid token"),
    (encode(base_claims(), algorithm="HS512"), "invalid token"),
    (jwt.encode(base_claims(), "", algorithm="none"), "invalid token"),
    (encode({k: v for k, v in base_claims().items() if k != "tenant_id"}), "no tenant in claim tenant_id"),
    (encode({k: v for k, v in base_claims().items() if k != "iat"}), "invalid token"),
    (encode({k: v for k, v in base_claims().items() if k != "sub"}), "invalid claims: sub"),
    (encode(base_claims(role="superuser")), "no locstream role in claim role (it has: superuser)"),
    (encode(base_claims(role=["superuser", 7])), "no locstream role in claim role (it has: superuser)"),
    (encode(base_claims(role={"dispatcher": True})), "no roles in claim role"),
    (encode(base_claims(tenant_id=42)), "claim tenant_id must be a string"),
    (encode(base_claims(tenant_id="")), "claim tenant_id: 1 to 128 characters"),
    (encode(base_claims(tenant_id="acme\r\nX-Injected: 1")), "claim tenant_id: 1 to 128 characters"),
    (encode(base_claims(tenant_id="acme\u202e")), "claim tenant_id: 1 to 128 characters"),  # a bidi override
    (encode(base_claims(tenant_id=" acme")), "claim tenant_id: 1 to 128 characters"),
    (encode(base_claims(tenant_id="t" * 129)), "claim tenant_id: 1 to 128 characters"),
    (encode(base_claims(sub="u1\n")), "invalid claims: sub"),
    ("x" * 9000, "token too large"),
]


@pytest.mark.parametrize(("token", "reason"), BAD_TOKENS, ids=[reason for _, reason in BAD_TOKENS])
def test_bad_tokens_are_refused_with_a_reason(token: str | None, reason: str) -> None:
    with pytest.raises(AuthError) as refused:
        verify_token(token, SETTINGS)
    assert refused.value.reason.startswith(reason)


def test_a_tenant_named_in_any_script_is_welcome() -> None:
    assert verify_token(encode(base_claims(tenant_id="Тенант-東京 fibre")), SETTINGS).tenant_id == "Тенант-東京 fibre"


def test_the_secret_is_required_outside_dev_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCSTREAM_JWT_SECRET", raising=False)
    monkeypatch.delenv("LOCSTREAM_DEV", raising=False)
    with pytest.raises(ValidationError, match="LOCSTREAM_JWT_SECRET"):
        AuthSettings()
    monkeypatch.setenv("LOCSTREAM_DEV", "1")
    assert AuthSettings().secret == DEV_JWT_SECRET


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValidationError, match="32 bytes"):
        AuthSettings(jwt_secret="short")


async def test_verified_tokens_are_remembered_until_they_expire() -> None:
    now = [time.time()]
    tokens = TokenVerifier(SETTINGS, capacity=2, clock=lambda: now[0])
    token = issue_token(SETTINGS, tenant_id="t1", sub="u1", role=Role.TECHNICIAN, ttl_seconds=60)
    first = await tokens.verify(token)
    assert await tokens.verify(token) is first  # not decoded again
    now[0] += 61  # past its exp (by the cache's clock): the remembered claims are dropped, the token checked again
    assert await tokens.verify(token) is not first
    for forged in (token[:-2] + "xx", token + "x"):
        with pytest.raises(AuthError):
            await tokens.verify(forged)
        with pytest.raises(AuthError):  # refused, so never remembered
            await tokens.verify(forged)


async def test_verified_tokens_are_bounded() -> None:
    tokens = TokenVerifier(SETTINGS, capacity=2)
    issued = [issue_token(SETTINGS, tenant_id="t1", sub=f"u{i}", role=Role.TECHNICIAN) for i in range(3)]
    claims = [await tokens.verify(token) for token in issued]
    assert await tokens.verify(issued[2]) is claims[2]
    assert await tokens.verify(issued[0]) is not claims[0]  # the oldest was dropped: verified afresh


def test_issued_tokens_follow_the_claim_mapping() -> None:
    settings = AuthSettings(
        jwt_secret=SECRET, jwt_tenant_claim="org_id", jwt_roles_claim="groups", jwt_role_map="fleet-ops=dispatcher"
    )
    token = issue_token(settings, tenant_id="t9", sub="u1", role=Role.DISPATCHER)
    assert jwt.decode(token, SECRET, algorithms=["HS256"])["org_id"] == "t9"
    # the role map maps the provider's names: locstream's own name is not one of them
    with pytest.raises(AuthError, match="no locstream role in claim groups"):
        verify_token(token, settings)
    assert verify_token(encode(base_claims(org_id="t9", groups=["fleet-ops"])), settings).roles == {Role.DISPATCHER}


def test_jwks_settings_need_issuer_and_audience_and_no_secret() -> None:
    jwks = "https://idp.example/certs"
    with pytest.raises(ValidationError, match="ISSUER and LOCSTREAM_JWT_AUDIENCE"):
        AuthSettings(jwt_jwks_url=jwks, jwt_issuer="https://idp.example")
    with pytest.raises(ValidationError, match="not both"):
        AuthSettings(jwt_jwks_url=jwks, jwt_issuer="i", jwt_audience="a", jwt_secret=SECRET)
    with pytest.raises(ValidationError, match="HS256"):
        AuthSettings(jwt_jwks_url=jwks, jwt_issuer="i", jwt_audience="a", jwt_algorithms="RS256,HS256")
    with pytest.raises(ValidationError, match="not a locstream role"):
        AuthSettings(jwt_secret=SECRET, jwt_role_map="fleet-ops=superuser")
    settings = AuthSettings(jwt_jwks_url=jwks, jwt_issuer="i", jwt_audience="a")
    assert settings.algorithms == ["RS256", "ES256"]
    with pytest.raises(AuthError, match="identity provider"):
        issue_token(settings, tenant_id="t1", sub="u1", role=Role.ADMIN)
