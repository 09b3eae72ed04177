"""Token verification in JWKS mode, against a real JWKS served over HTTP (``tests/support/jwks_provider.py``):
RS256 and ES256, hostile tokens (key confusion, alg none, odd kids, headers that point elsewhere), refetch limits,
rotation, and a provider that is down, slow, garbage or empty: every case refused, none accepted."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time
from collections.abc import Iterator

import jwt
import pytest

from locstream.auth import AuthError, TokenVerifier
from locstream.jwks import JwksKeys, secure_enough
from locstream.settings import AuthSettings
from schemas.claims import Role
from tests.support.doc_examples import example_env
from tests.support.jwks_provider import JwksProvider


@pytest.fixture
def provider() -> Iterator[JwksProvider]:
    with JwksProvider().running() as running:
        yield running


@pytest.fixture
def attacker() -> Iterator[JwksProvider]:
    """Another provider: its keys are not the fleet's, its URL is where a hostile header points."""
    with JwksProvider().running() as running:
        yield running


def settings_for(provider: JwksProvider, **overrides: object) -> AuthSettings:
    env = {key.removeprefix("LOCSTREAM_").lower(): value for key, value in provider.env().items()}
    return AuthSettings.model_validate({**env, **overrides})


def _unsigned_b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def hs256_by_hand(claims: dict[str, object], key: bytes, kid: str) -> str:
    """An HS256 token whose HMAC key is the provider's public key: the key-confusion attack (PyJWT refuses to make
    one, so it is made by hand)."""
    signing_input = f"{_unsigned_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{_unsigned_b64(claims)}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


async def test_rs256_and_es256_tokens_verify_to_their_claims(provider: JwksProvider) -> None:
    verifier = TokenVerifier(settings_for(provider))
    claims = provider.claims("tenant-a", Role.ANALYST, sub="u1")
    for algorithm in ("RS256", "ES256"):
        verified = await verifier.verify(provider.sign(claims, algorithm=algorithm))
        assert (verified.tenant_id, verified.sub, verified.roles) == ("tenant-a", "u1", frozenset({Role.ANALYST}))
    assert provider.requests == 1  # the set was fetched once and kept


async def test_hostile_tokens_are_refused_and_hostile_headers_never_followed(
    provider: JwksProvider, attacker: JwksProvider
) -> None:
    verifier = TokenVerifier(settings_for(provider))
    valid = provider.claims("tenant-a", Role.DISPATCHER)
    assert (await verifier.verify(provider.sign(valid))).tenant_id == "tenant-a"
    now = int(time.time())
    attacker_signed = attacker.sign(valid)  # right claims, the attacker's key and kid
    hostile = {
        "alg none": jwt.encode(valid, "", algorithm="none", headers={"kid": provider.rsa_kid}),
        "HS256 keyed with the public key": hs256_by_hand(valid, provider.public_pem(), provider.rsa_kid),
        "HS256 keyed with the modulus": hs256_by_hand(
            valid, provider.jwks()["keys"][0]["n"].encode(), provider.rsa_kid
        ),
        "no kid": jwt.encode(valid, provider.rsa_key, algorithm="RS256"),
        "kid huge": provider.sign(valid, {"kid": "k" * 2_000}),
        "kid a path": provider.sign(valid, {"kid": "../../../../etc/passwd"}),
        "kid a URL": provider.sign(valid, {"kid": attacker.url}),
        "kid not a string": f"{_unsigned_b64({'alg': 'RS256', 'kid': {'$ref': 'x'}})}.{_unsigned_b64(valid)}.c2ln",
        "kid of the encryption key": provider.sign(valid, {"kid": "enc-1"}),
        "ES256 claimed for the RSA key": provider.sign(valid, algorithm="ES256", headers={"kid": provider.rsa_kid}),
        "RS256 claimed for the EC key": provider.sign(valid, {"kid": provider.ec_kid}),
        "PS256 (not configured)": provider.sign(valid, algorithm="PS256"),
        "attacker's key, the fleet's kid": attacker.sign(valid, {"kid": provider.rsa_kid}),
        "attacker's key and kid": attacker_signed,
        "jku to the attacker": attacker.sign(valid, {"jku": attacker.url}),
        "x5u to the attacker": attacker.sign(valid, {"x5u": attacker.url, "kid": provider.rsa_kid}),
        "embedded jwk": attacker.sign(valid, {"jwk": attacker.jwks()["keys"][0], "kid": provider.rsa_kid}),
        "expired": provider.sign({**valid, "exp": now - 60}),
        "other issuer": provider.sign({**valid, "iss": attacker.issuer}),
        "other audience": provider.sign({**valid, "aud": "someone-else"}),
        "no audience": provider.sign({k: v for k, v in valid.items() if k != "aud"}),
        "no tenant": provider.sign({k: v for k, v in valid.items() if k != "tenant_id"}),
        "unknown role": provider.sign({**valid, "role": "root"}),
        "tampered payload": provider.sign(valid).replace(".", ".e30", 1)[:-1],
        "oversize": provider.sign({**valid, "pad": "x" * 9_000}),
    }
    for case, token in hostile.items():
        with pytest.raises(AuthError) as refused:
            await verifier.verify(token)
        assert refused.value.reason, case
    assert attacker.requests == 0  # no header made the verifier fetch anything from elsewhere
    assert provider.requests <= 2  # the first fetch, and at most one refetch for all the unknown kids


async def test_unknown_kids_refetch_at_most_once_per_interval_and_rotation_needs_no_restart(
    provider: JwksProvider,
) -> None:
    now = [1_000.0]
    settings = settings_for(provider)
    keys = JwksKeys(provider.url, settings.algorithms, timeout=1.0, refetch_interval=30.0, max_age=600.0)
    keys._clock = lambda: now[0]
    verifier = TokenVerifier(settings, keys=keys)
    valid = provider.claims("tenant-a", Role.DISPATCHER)
    await verifier.verify(provider.sign(valid))
    with pytest.raises(AuthError, match="unknown signing key"):  # fetched just now: not fetched again
        await verifier.verify(provider.sign(valid, {"kid": "made-up"}))
    assert provider.requests == 1
    now[0] += 31
    for i in range(50):  # a flood of made-up kids: one refetch in all
        with pytest.raises(AuthError, match="unknown signing key"):
            await verifier.verify(provider.sign(valid, {"kid": f"made-up-{i}"}))
    assert provider.requests == 2
    provider.rotate()
    rotated = provider.sign(valid)
    with pytest.raises(AuthError, match="unknown signing key"):  # within the interval: not fetched again
        await verifier.verify(rotated)
    now[0] += 31
    assert (await verifier.verify(rotated)).tenant_id == "tenant-a"  # past it: the new key is fetched, no restart
    assert provider.requests == 3
    dropped_kid, dropped_key = provider.rsa_kid, provider.rsa_key
    provider.rotate(keep_old=False)
    signed_with_dropped = jwt.encode(
        {**valid, "sub": "late"}, dropped_key, algorithm="RS256", headers={"kid": dropped_kid}
    )
    assert (await verifier.verify(signed_with_dropped)).sub == "late"  # the keys at hand are still young
    now[0] += 601  # they grew old: fetched again, and the key the provider dropped is gone
    with pytest.raises(AuthError, match="unknown signing key"):
        await verifier.verify(
            jwt.encode({**valid, "sub": "later"}, dropped_key, algorithm="RS256", headers={"kid": dropped_kid})
        )
    assert provider.requests == 4


async def test_concurrent_first_tokens_share_one_fetch(provider: JwksProvider) -> None:
    verifier = TokenVerifier(settings_for(provider))
    tokens = [provider.token("tenant-a", sub=f"u{i}") for i in range(20)]
    verified = await asyncio.gather(*(verifier.verify(token) for token in tokens))
    assert [claims.sub for claims in verified] == [f"u{i}" for i in range(20)]
    assert provider.requests == 1


@pytest.mark.serial
@pytest.mark.parametrize("mode", ["down", "slow", "garbage", "empty", "redirect", "huge", "not-json-object"])
async def test_a_provider_that_misbehaves_fails_closed_within_the_deadline(provider: JwksProvider, mode: str) -> None:
    provider.mode = mode  # type: ignore[assignment]
    verifier = TokenVerifier(settings_for(provider, jwt_jwks_timeout_seconds=1.0))  # the slow provider takes 5 s
    began = time.monotonic()
    with pytest.raises(AuthError, match="signing keys are unavailable"):
        await verifier.verify(provider.token("tenant-a"))
    assert time.monotonic() - began < 4.5  # cut short by the deadline, not by the provider finishing
    assert provider.requests == 1


async def test_keys_at_hand_stay_in_use_when_the_provider_goes_down(provider: JwksProvider) -> None:
    now = [0.0]
    settings = settings_for(provider)
    keys = JwksKeys(provider.url, settings.algorithms, timeout=1.0, refetch_interval=30.0, max_age=600.0)
    keys._clock = lambda: now[0]
    verifier = TokenVerifier(settings, keys=keys)
    await verifier.verify(provider.token("tenant-a", sub="first"))
    provider.mode = "down"
    now[0] += 700  # old enough to be fetched again: the fetch fails, the key at hand still verifies
    assert (await verifier.verify(provider.token("tenant-a", sub="second"))).sub == "second"
    assert provider.requests == 2


async def test_claim_mapping_reads_nested_and_namespaced_claims(provider: JwksProvider) -> None:
    settings = settings_for(
        provider,
        jwt_tenant_claim="https://locstream.example/tenant",
        jwt_roles_claim="realm_access.roles",
        jwt_role_map="fleet-dispatcher=dispatcher,fleet-gateway=device_gateway",
    )
    verifier = TokenVerifier(settings)
    base = {k: v for k, v in provider.claims("x", Role.DISPATCHER).items() if k not in ("tenant_id", "role")}
    mapped = {**base, "https://locstream.example/tenant": "tenant-n", "realm_access": {"roles": ["fleet-dispatcher"]}}
    claims = await verifier.verify(provider.sign(mapped))
    assert (claims.tenant_id, claims.roles) == ("tenant-n", frozenset({Role.DISPATCHER}))
    several = {**mapped, "realm_access": {"roles": ["offline_access", "fleet-gateway", "fleet-dispatcher"]}}
    assert (await verifier.verify(provider.sign(several))).roles == {Role.DISPATCHER, Role.DEVICE_GATEWAY}
    as_string = {**mapped, "realm_access": {"roles": "fleet-gateway"}}
    assert (await verifier.verify(provider.sign(as_string))).roles == {Role.DEVICE_GATEWAY}
    for roles in (["admin", "offline_access"], [], "dispatcher"):  # a provider's own "admin" is not locstream's
        with pytest.raises(AuthError, match=r"no locstream role in claim realm_access\.roles"):
            await verifier.verify(provider.sign({**mapped, "realm_access": {"roles": roles}}))


async def test_the_documented_auth0_example_reads_an_auth0_shaped_token(provider: JwksProvider) -> None:
    documented = example_env("edge.md", "for Auth0:")
    domain = "https://fleet-acme.eu.auth0.com/"
    env = {name: value.replace(f"{domain}.well-known/jwks.json", provider.url) for name, value in documented.items()}
    env["LOCSTREAM_JWT_ISSUER"] = env["LOCSTREAM_JWT_ISSUER"].replace(domain, f"{provider.issuer}/")
    settings = AuthSettings.model_validate({k.removeprefix("LOCSTREAM_").lower(): v for k, v in env.items()})
    verifier = TokenVerifier(settings)
    now = int(time.time())
    auth0_shaped = {  # what an Auth0 access token for a user, with the documented Action, carries
        "iss": f"{provider.issuer}/",
        "sub": "auth0|65f0c0ffee",
        "aud": ["https://locstream.example/api", f"{provider.issuer}/userinfo"],
        "iat": now,
        "exp": now + 600,
        "azp": "map-spa-client",
        "scope": "openid profile",
        "https://locstream.example/tenant": "org_acme",
        "https://locstream.example/roles": ["Fleet Admin", "Billing"],
    }
    claims = await verifier.verify(provider.sign(auth0_shaped))
    assert (claims.tenant_id, claims.sub, claims.roles) == ("org_acme", "auth0|65f0c0ffee", frozenset({Role.ADMIN}))
    with pytest.raises(AuthError, match="no locstream role"):
        await verifier.verify(provider.sign({**auth0_shaped, "https://locstream.example/roles": ["Billing"]}))


def test_plain_http_is_secure_enough_only_on_loopback() -> None:
    assert secure_enough("https://sso.example.com/certs") and secure_enough("http://127.0.0.1:8080/certs")
    assert not secure_enough("http://keycloak:8080/realms/x/protocol/openid-connect/certs")


def test_the_cli_refuses_to_sign_tokens_that_the_provider_should() -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "LOCSTREAM_JWT_JWKS_URL": "https://sso.example.com/certs",
        "LOCSTREAM_JWT_ISSUER": "https://sso.example.com",
        "LOCSTREAM_JWT_AUDIENCE": "locstream",
    }
    for command in (["token", "--tenant", "t", "--sub", "u", "--role", "admin"], ["dev"]):
        done = subprocess.run([sys.executable, "-m", "launch.cli", *command], capture_output=True, text=True, env=env)
        assert done.returncode == 2 and "LOCSTREAM_JWT_JWKS_URL" in done.stderr + done.stdout, done.stderr
