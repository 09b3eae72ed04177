"""Sign-in from a real identity provider: Keycloak (``launch/keycloak.py``) with the example realm
(``deploy/keycloak/locstream-realm.json``): tenants as a user attribute mapped to the claim ``org.id``, realm roles
under ``realm_access.roles`` mapped by ``LOCSTREAM_JWT_ROLE_MAP``, a dispatcher by password grant, a vehicle
gateway by client credentials. Its tokens are used on ingest, the four WebSocket ways, history, the HTTP export
and the replay CLI; its keys are rotated under running services; tokens of another realm, expired ones and ones
without a mapped role are refused with a reason."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from launch import keycloak as kc
from tests.support.doc_examples import example_env
from tests.support.kafka_io import clock_past
from tests.support.maps import WS_PATH, recv_json
from tests.support.stack import Service, Stack, eventually

# One test process for the module's Keycloak (a module fixture); in the parallel pass: no deadline is asserted here.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("keycloak")]

PREFIX = "/api/v1/field-service"
GATEWAY_SECRET = "fleet-gateway-a-secret-for-tests-only"  # the example realm's (deploy/keycloak)


def _idp_env(config: kc.KeycloakConfig) -> dict[str, str]:
    """docs/configuration.md's Keycloak example as written, pointed at the test's Keycloak."""
    documented = example_env("configuration.md", "### Example: Keycloak")
    env = {name: value.replace("https://sso.example.com", config.url) for name, value in documented.items()}
    assert env["LOCSTREAM_JWT_JWKS_URL"] == config.jwks_url() and env["LOCSTREAM_JWT_ISSUER"] == config.issuer()
    return {**env, "LOCSTREAM_JWT_JWKS_REFETCH_SECONDS": "1"}


@pytest.fixture
async def idp_stack(stack: Stack, keycloak: kc.KeycloakConfig) -> AsyncIterator[Stack]:
    del stack.env["LOCSTREAM_JWT_SECRET"]
    stack.env.update(_idp_env(keycloak))
    yield stack


def _user(config: kc.KeycloakConfig, name: str, realm: str = "locstream") -> str:
    return kc.password_token(config, name, f"{name}-password", realm)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _post_fix(producers: Service, token: str, technician: str) -> httpx.Response:
    fix = {
        "event_id": str(uuid.uuid4()),
        "technician_id": technician,
        "recorded_at": datetime.now(UTC).isoformat(),
        "latitude": 6.5,
        "longitude": 3.4,
    }
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(
            f"{producers.url}{PREFIX}/locations/batch", json={"fixes": [fix]}, headers=_bearer(token)
        )


async def _map(edge: Service, way: str, token: str) -> dict[str, Any]:
    """Connect one of the four ways; the ``connected`` frame, then the first frame after it."""
    url, options = f"{edge.ws_url}{WS_PATH}", dict[str, Any]()
    if way == "query":
        url += f"?token={token}"
    elif way == "subprotocol":
        options = {"subprotocols": ["locstream.v1", f"locstream.bearer.{token}"]}
    elif way == "cookie":
        options = {"additional_headers": {"Cookie": f"access_token={token}"}}
    async with websockets.connect(url, **options) as ws:
        if way == "message":
            await ws.send(json.dumps({"type": "auth", "token": token}))
        connected = await recv_json(ws)
        assert connected["type"] == "connected", (way, connected)
        return {**connected, "first": await recv_json(ws)}


async def _refused_close(edge: Service, token: str) -> tuple[int, str]:
    async with websockets.connect(f"{edge.ws_url}{WS_PATH}?token={token}") as ws:
        with pytest.raises(ConnectionClosed) as closed:
            frame = await ws.recv()
            pytest.fail(f"got a data frame {frame!r}")
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def _replay_cli(stack: Stack, token: str, start: str, end: str, out: Path) -> tuple[int, str]:
    code, _, err = await stack.replay_cli(
        "--tenant", "tenant-a", "--from", start, "--to", end, "--out", str(out), token=token
    )
    return code, err


async def test_keycloak_tokens_work_everywhere_a_token_is_taken(
    idp_stack: Stack, keycloak: kc.KeycloakConfig, tmp_path: Path
) -> None:
    stack = idp_stack
    producers = await stack.start("producers")
    projector = await stack.start("projector")
    edge = await stack.start("ws-edge")
    gateway = kc.client_token(keycloak, "fleet-gateway-a", GATEWAY_SECRET)
    dana, ana, bo = _user(keycloak, "dana"), _user(keycloak, "ana"), _user(keycloak, "bo")
    assert jwt.decode(dana, options={"verify_signature": False})["org"]["id"] == "tenant-a"

    start = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    posted = await _post_fix(producers, gateway, "van-7")  # client credentials: the gateway of tenant-a
    assert posted.status_code == 202, posted.text
    end_at = datetime.now(UTC) + timedelta(seconds=1)
    end = end_at.isoformat()

    async def in_history() -> bool:
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.get(
                f"{projector.url}{PREFIX}/technicians/van-7/location-history", headers=_bearer(dana)
            )
        return answer.status_code == 200 and answer.json()["total_points"] == 1

    await eventually(in_history, timeout=30, what="the gateway's fix in dana's history")
    async with httpx.AsyncClient(timeout=10) as client:
        other = await client.get(f"{projector.url}{PREFIX}/technicians/van-7/location-history", headers=_bearer(bo))
    assert other.status_code == 404  # tenant-b's dispatcher: no such technician in its tenant

    await _eventually_in_map(edge, dana)
    for way in ("query", "subprotocol", "cookie", "message"):  # dana, tenant-a, the four ways
        connected = await _map(edge, way, dana)
        assert connected["tenant_id"] == "tenant-a", way
        assert [entry["technician_id"] for entry in connected["first"]["data"]] == ["van-7"], way
    connected_b = await _map(edge, "query", bo)
    assert connected_b["tenant_id"] == "tenant-b" and connected_b["first"]["data"] == []

    await clock_past(int(end_at.timestamp() * 1000))
    async with httpx.AsyncClient(timeout=30) as client:  # the HTTP export: an analyst of tenant-a
        url = f"{projector.url}{PREFIX}/history/export"
        exported = await client.get(url, params={"from": start, "to": end}, headers=_bearer(ana))
        assert exported.status_code == 200, exported.text
        assert [json.loads(line)["technician_id"] for line in exported.text.splitlines()] == ["van-7"]
        by_dispatcher = await client.get(url, params={"from": start, "to": end}, headers=_bearer(dana))
        assert by_dispatcher.status_code == 403 and "dispatcher may not export" in by_dispatcher.text
    out = tmp_path / "replay.ndjson"
    code, err = await _replay_cli(stack, ana, start, end, out)
    assert code == 0, err
    assert out.read_bytes() == exported.content
    paced = urlencode({"token": ana, "replay_from": start, "replay_to": end, "speed": 1000})
    async with websockets.connect(f"{edge.ws_url}{WS_PATH}?{paced}") as replay:  # the paced replay, on the map
        assert (await recv_json(replay))["type"] == "connected"
        assert (await recv_json(replay, 30))["type"] == "initial_state"
        played = [await recv_json(replay, 30) for _ in range(2)]
    assert [frame["type"] for frame in played] == ["location_update", "replay_done"]
    assert played[0]["data"]["technician_id"] == "van-7"
    code, err = await _replay_cli(stack, dana, start, end, tmp_path / "refused.ndjson")  # a dispatcher may not
    assert code == 2 and "may not export" in err


async def _eventually_in_map(edge: Service, token: str) -> None:
    async def shown() -> bool:
        connected = await _map(edge, "query", token)
        return "van-7" in [entry["technician_id"] for entry in connected["first"]["data"]]

    await eventually(shown, timeout=30, what="van-7 on dana's map")


async def test_another_realm_an_unmapped_role_and_an_expired_token_are_refused(
    idp_stack: Stack, keycloak: kc.KeycloakConfig
) -> None:
    producers = await idp_stack.start("producers")
    edge = await idp_stack.start("ws-edge")
    elsewhere_dana = _user(keycloak, "dana", realm="elsewhere")  # the same user, another realm's keys and issuer
    gus = _user(keycloak, "gus")  # a realm role the role map does not name
    admin = kc.Admin(keycloak)
    admin.set_token_lifespan(5)  # an expired token of the right realm: one that lives 5 s
    try:
        expiring = _user(keycloak, "dana")
    finally:
        admin.set_token_lifespan(300)
    assert (await _post_fix(producers, expiring, "van-7")).status_code == 403  # valid now: a dispatcher may not post
    refusals = {
        "another realm": (elsewhere_dana, "invalid token"),
        "unmapped role": (gus, "no locstream role in claim realm_access.roles (it has: fleet-guest)"),
    }
    for case, (token, reason) in refusals.items():
        answer = await _post_fix(producers, token, "van-7")
        assert answer.status_code == 401 and reason in answer.json()["message"], (case, answer.text)
        code, close_reason = await _refused_close(edge, token)
        assert code == 1008 and close_reason.startswith(reason[:60]), (case, close_reason)
    exp = jwt.decode(expiring, options={"verify_signature": False})["exp"]
    await asyncio.sleep(max(0.0, exp + 1 - time.time()))  # the condition is the clock: wait out the token's life
    answer = await _post_fix(producers, expiring, "van-7")
    assert answer.status_code == 401 and answer.json()["message"] == "token expired"
    assert await _refused_close(edge, expiring) == (1008, "token expired")


async def test_rotated_keys_are_taken_without_a_restart(idp_stack: Stack, keycloak: kc.KeycloakConfig) -> None:
    producers = await idp_stack.start("producers")
    edge = await idp_stack.start("ws-edge")
    before = kc.client_token(keycloak, "fleet-gateway-a", GATEWAY_SECRET)
    assert (await _post_fix(producers, before, "van-1")).status_code == 202
    assert (await _map(edge, "query", _user(keycloak, "dana")))["tenant_id"] == "tenant-a"  # the edge has the keys
    kc.Admin(keycloak).rotate_keys(priority=1000 + int(time.time()) % 1000)
    after = kc.client_token(keycloak, "fleet-gateway-a", GATEWAY_SECRET)
    old_kid = jwt.get_unverified_header(before)["kid"]
    assert jwt.get_unverified_header(after)["kid"] != old_kid  # Keycloak signs with the new key

    async def accepted() -> bool:  # the first try may fall within the refetch interval (1 s here)
        return (await _post_fix(producers, after, "van-2")).status_code == 202

    await eventually(accepted, timeout=15, what="a token of the rotated key accepted")
    assert (await _post_fix(producers, before, "van-3")).status_code == 202  # the old key is still published
    dana = _user(keycloak, "dana")
    assert jwt.get_unverified_header(dana)["kid"] != old_kid

    async def on_the_map() -> bool:
        try:
            connected = await _map(edge, "query", dana)
        except ConnectionClosed:
            return False
        return bool(connected["tenant_id"] == "tenant-a")

    await eventually(on_the_map, timeout=15, what="the edge to take the rotated key")  # the same process
