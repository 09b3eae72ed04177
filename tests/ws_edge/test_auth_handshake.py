"""The edge's auth handshake: where a token may come from, what is refused before any data frame, and expiry."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
import websockets
from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.exceptions import ConnectionClosed, InvalidStatus

from schemas.claims import Role
from tests.support.maps import WS_PATH, connect, recv_json
from tests.support.stack import Service, Stack

pytestmark = pytest.mark.integration


def _hs256_by_hand(claims: dict[str, object], key: bytes, kid: str | None = None) -> str:
    """What PyJWT refuses to make: an HS256 token whose HMAC key is a PEM public key (the algorithm-confusion
    attack on verifiers that take the key from the token's own algorithm)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = json.dumps({"alg": "HS256", "typ": "JWT", **({"kid": kid} if kid else {})}).encode()
    signing_input = f"{b64(header)}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


async def _closed_before_data(
    edge: Service, query: str, first_message: str | None = None, **options: object
) -> tuple[int, str]:
    async with websockets.connect(f"{edge.ws_url}{WS_PATH}{query}", **options) as ws:  # type: ignore[arg-type]
        if first_message is not None:
            await ws.send(first_message)
        with pytest.raises(ConnectionClosed) as closed:
            frame = await ws.recv()
            pytest.fail(f"{query[:40]}: got a data frame {frame!r}")
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


@pytest.mark.parametrize("stack", ["hs256", "jwks"], indirect=True)
async def test_bad_tokens_are_closed_with_1008_before_any_data(stack: Stack) -> None:
    """The corpus in both modes: HS256 with the shared secret, and RS256 from an identity provider's JWKS."""
    stack.env["LOCSTREAM_EDGE_AUTH_TIMEOUT_SECONDS"] = "1"
    edge = await stack.start("ws-edge")
    valid = jwt.decode(stack.token("tenant-a"), options={"verify_signature": False})
    now = int(time.time())
    signed = stack.sign

    def without(name: str) -> dict[str, object]:
        return {k: v for k, v in valid.items() if k != name}

    if stack.provider is not None:  # the provider's own public key, and a key of an attacker's with its kid
        public_key = stack.provider.public_pem().decode()
        attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = jwt.encode(valid, attacker, algorithm="RS256", headers={"kid": stack.provider.rsa_kid})
    else:
        public_key = (
            "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE" + "A" * 40 + "\n-----END PUBLIC KEY-----"
        )
        forged = jwt.encode(valid, "x" * 40, algorithm="HS256")
    bad_tokens = {
        "empty": "",
        "garbage": "abc.def.ghi",
        "not a jwt": "hello",
        "expired": stack.token("tenant-a", ttl=-60),
        "forged": forged,
        "alg none": jwt.encode(valid, "", algorithm="none"),
        "HS256 signed with a public key": _hs256_by_hand(
            valid, public_key.encode(), stack.provider.rsa_kid if stack.provider else None
        ),
        "HS512 instead of HS256": jwt.encode(valid, "s" * 128, algorithm="HS512"),
        "no tenant": signed(without("tenant_id")),
        "no exp": signed(without("exp")),
        "no iat": signed(without("iat")),
        "no role": signed(without("role")),
        "unknown role": signed({**valid, "role": "root"}),
        "tenant not a string": signed({**valid, "tenant_id": 42}),
        "empty sub": signed({**valid, "sub": ""}),
        "iat in the future": signed({**valid, "iat": now + 3600}),
        "nbf in the future": signed({**valid, "nbf": now + 3600}),
        "exp not a number": signed({**valid, "exp": "tomorrow"}),
        "unknown crit": signed(valid, headers={"crit": ["x-unknown"], "x-unknown": 1}),
        "oversize": signed({**valid, "pad": "x" * 9_000}),
        "technician role": stack.token("tenant-a", Role.TECHNICIAN, sub="tech-1"),
        "device gateway role": stack.token("tenant-a", Role.DEVICE_GATEWAY),
    }
    for case, token in bad_tokens.items():
        as_message = await _closed_before_data(edge, "", json.dumps({"type": "auth", "token": token}))
        assert as_message[0] == 1008 and as_message[1], case
        if len(token) > 4_000:  # beyond what a URL or a header line may hold
            continue
        in_query = await _closed_before_data(edge, f"?token={token}")
        assert in_query[0] == (1008 if token else 4001), case  # ?token= (empty) is no token: the auth timeout
        if token:
            as_subprotocol = await _closed_before_data(edge, "", subprotocols=[f"locstream.bearer.{token}"])
            assert as_subprotocol[0] == 1008, case
    assert await _closed_before_data(edge, "") == (4001, "no token in time")
    # The same edge accepts a valid dispatcher: the cases above were refused for their token alone.
    async with websockets.connect(f"{edge.ws_url}{WS_PATH}?token={stack.token('tenant-a')}") as ws:
        assert '"connected"' in str(await ws.recv())
    log = edge.log()
    assert all(token not in log for token in bad_tokens.values() if len(token) > 20), "a token reached the log"


async def test_the_token_may_come_as_first_message_subprotocol_or_cookie_and_origins_are_checked(stack: Stack) -> None:
    stack.env["LOCSTREAM_EDGE_ALLOWED_ORIGINS"] = '["https://dispatch.example"]'
    edge = await stack.start("ws-edge")
    token = stack.token("tenant-a")
    by_message = await connect(edge)
    await by_message.send(json.dumps({"type": "auth", "token": token}))
    assert (await recv_json(by_message))["tenant_id"] == "tenant-a"
    by_subprotocol = await connect(edge, subprotocols=["locstream.v1", f"locstream.bearer.{token}"])
    assert by_subprotocol.subprotocol == "locstream.v1"  # the token is never echoed
    assert (await recv_json(by_subprotocol))["tenant_id"] == "tenant-a"
    by_cookie = await connect(edge, additional_headers={"Cookie": f"access_token={token}"})
    assert (await recv_json(by_cookie))["tenant_id"] == "tenant-a"
    for allowed in ("https://dispatch.example", edge.url):  # a listed origin, and the edge's own
        browser = await connect(edge, token, origin=allowed)
        assert (await recv_json(browser))["type"] == "connected"
    with pytest.raises(InvalidStatus) as refused:
        await connect(edge, token, origin="https://evil.example")
    assert refused.value.response.status_code == 403


async def test_an_expired_token_closes_4001_unless_a_fresh_one_was_sent(stack: Stack) -> None:
    stack.env["LOCSTREAM_EDGE_TOKEN_EXPIRY_LEEWAY_SECONDS"] = "0"
    edge = await stack.start("ws-edge")
    lapsing = await connect(edge, stack.token("tenant-a", ttl=2))
    refreshed = await connect(edge, stack.token("tenant-a", ttl=2))
    for ws in (lapsing, refreshed):
        assert (await recv_json(ws))["type"] == "connected" and (await recv_json(ws))["type"] == "initial_state"
    await refreshed.send(json.dumps({"type": "auth", "token": stack.token("tenant-a", ttl=600)}))
    with pytest.raises(ConnectionClosed) as closed:
        await recv_json(lapsing, timeout=10)
    assert closed.value.rcvd is not None and (closed.value.rcvd.code, closed.value.rcvd.reason) == (
        4001,
        "token expired",
    )
    await refreshed.send("ping")
    assert await recv_json(refreshed) == {"type": "pong"}  # past the first token's expiry, uninterrupted
    other_tenant = stack.token("tenant-b")
    await refreshed.send(json.dumps({"type": "auth", "token": other_tenant}))
    with pytest.raises(ConnectionClosed) as switched:
        await recv_json(refreshed)
    assert switched.value.rcvd is not None and switched.value.rcvd.code == 1008


async def test_no_token_reaches_the_log_after_1000_connects_and_rejects(stack: Stack) -> None:
    edge = await stack.start("ws-edge")
    tokens = [stack.token("tenant-a", ttl=600 + i) for i in range(500)]  # each one different
    forged = [token[:-4] + "AAAA" for token in tokens]

    async def visit(token: str, accepted: bool) -> None:
        async with websockets.connect(f"{edge.ws_url}{WS_PATH}?token={token}") as ws:
            if accepted:
                assert (await recv_json(ws))["type"] == "connected"
            else:
                with pytest.raises(ConnectionClosed):
                    await ws.recv()

    visits = [(token, True) for token in tokens] + [(token, False) for token in forged]
    for start in range(0, len(visits), 50):
        await asyncio.gather(*(visit(token, ok) for token, ok in visits[start : start + 50]))
    log = edge.log()
    assert log.count("[redacted]") >= 1_000  # uvicorn logged every handshake, with the token redacted
    leaked = [token for token in tokens + forged if token in log or token.split(".")[2] in log]
    assert leaked == []


async def test_with_an_issuer_and_audience_configured_tokens_must_name_them(stack: Stack) -> None:
    stack.env["LOCSTREAM_JWT_ISSUER"] = "https://auth.acme.example"
    stack.env["LOCSTREAM_JWT_AUDIENCE"] = "locstream"
    edge = await stack.start("ws-edge")
    secret = stack.env["LOCSTREAM_JWT_SECRET"]
    valid = jwt.decode(stack.token("tenant-a"), options={"verify_signature": False})
    assert valid["iss"] == "https://auth.acme.example" and valid["aud"] == "locstream"
    wrong = {
        "wrong iss": {**valid, "iss": "https://evil.example"},
        "wrong aud": {**valid, "aud": "someone-else"},
        "no iss": {k: v for k, v in valid.items() if k != "iss"},
        "no aud": {k: v for k, v in valid.items() if k != "aud"},
    }
    for case, claims in wrong.items():
        code, reason = await _closed_before_data(edge, f"?token={jwt.encode(claims, secret, algorithm='HS256')}")
        assert code == 1008 and reason, case
    async with websockets.connect(f"{edge.ws_url}{WS_PATH}?token={stack.token('tenant-a')}") as ws:
        assert (await recv_json(ws))["type"] == "connected"


async def test_a_token_is_redacted_however_its_parameter_name_is_percent_encoded(stack: Stack) -> None:
    edge = await stack.start("ws-edge")
    spellings = ["%74oken", "t%6Fken", "%74%6F%6B%65%6E", "%74%6f%6b%65%6e", "access%5Ftoken"]
    tokens = {spelling: stack.token("tenant-a", ttl=700 + i) for i, spelling in enumerate(spellings)}
    for spelling, token in tokens.items():
        async with websockets.connect(f"{edge.ws_url}{WS_PATH}?{spelling}={token}&protocol=1") as ws:
            if spelling == "access%5Ftoken":  # not a name the edge reads in a URL: it waits for an auth message
                await ws.send(json.dumps({"type": "auth", "token": token}))
            message = json.loads(await ws.recv())
            assert message["type"] == "connected", spelling  # the edge read the token (or took it in-band)
    log = edge.log()
    leaked = [spelling for spelling, token in tokens.items() if token.split(".")[2] in log or token in log]
    assert leaked == [] and log.count("=[redacted]") >= len(spellings)


async def test_messages_nested_too_deep_close_1007_in_the_auth_phase_and_after(stack: Stack) -> None:
    edge = await stack.start("ws-edge")
    nested = "[" * 5_000 + "]" * 5_000
    in_auth = await _closed_before_data(edge, "", first_message=nested)
    assert in_auth[0] == 1007 and "nested deeper than 32" in in_auth[1]
    deep_auth = '{"type": "auth", "token": ' + "[" * 40 + "]" * 40 + "}"
    assert (await _closed_before_data(edge, "", first_message=deep_auth))[0] == 1007
    for message in (nested, '{"type": "subscribe", "bbox": ' + "[" * 100 + "]" * 100 + "}"):
        ws = await connect(edge, stack.token("tenant-a"))
        assert (await recv_json(ws))["type"] == "connected" and (await recv_json(ws))["type"] == "initial_state"
        await ws.send(message)
        with pytest.raises(ConnectionClosed) as closed:
            await recv_json(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
    ws = await connect(edge, stack.token("tenant-a"))  # the edge goes on serving
    assert (await recv_json(ws))["type"] == "connected"
    assert "Traceback" not in edge.log() and "RecursionError" not in edge.log()
