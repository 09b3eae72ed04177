"""What attacking a running ingest API found (issue 15), each against the API as a process on a real broker: deeply
nested metadata, technician ids that only some routes refused, rate-limit buckets multiplied by header spelling,
bodies that trickle or stop half-way, and concurrent batches that Kafka acknowledged but aiokafka timed out."""

from __future__ import annotations

import asyncio
import socket
import struct
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from schemas.claims import Role
from tests.support.kafka_io import end_offsets
from tests.support.stack import Service, Stack, eventually

pytestmark = pytest.mark.integration

PREFIX = "/api/v1/field-service"
BATCH = f"{PREFIX}/locations/batch"
JSON = {"Content-Type": "application/json"}


def _nested(levels: int) -> str:
    """A JSON object ``levels`` deep, as text (Python's own encoder would recurse too deep to write it)."""
    return '{"a": ' * (levels - 1) + "{}" + "}" * (levels - 1)


def _batch(count: int, technician: str = "tech-1") -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {
        "fixes": [
            {
                "event_id": str(uuid.uuid4()),
                "technician_id": f"{technician}-{i % 50}",
                "recorded_at": now,
                "latitude": 1.0 + i / 10_000,
                "longitude": 2.0,
                "metadata": {"note": "x" * 100},
            }
            for i in range(count)
        ]
    }


async def test_metadata_nested_deep_is_refused_422_never_500(stack: Stack) -> None:
    api = await stack.start("producers")
    headers = {"Authorization": f"Bearer {stack.token('tenant-a', Role.TECHNICIAN, sub='tech-1')}", **JSON}
    before = await end_offsets(stack.kafka)
    async with httpx.AsyncClient(base_url=api.url) as http:
        for levels in (8, 33, 990, 5_000):
            body = '{"latitude": 1.0, "longitude": 2.0, "metadata": ' + _nested(levels) + "}"
            answer = await http.post(f"{PREFIX}/technicians/tech-1/location", content=body, headers=headers)
            if levels == 8:
                assert answer.status_code == 202, answer.text
                continue
            assert answer.status_code == 422, (levels, answer.text)
            assert "nested deeper" in answer.json()["message"], answer.text
    after = await end_offsets(stack.kafka)
    assert sum(after.values()) - sum(before.values()) == 1  # only the acceptable one
    assert "Traceback" not in api.log()


async def test_one_technician_id_rule_for_every_write(stack: Stack) -> None:
    api = await stack.start("producers")
    gateway = {"Authorization": f"Bearer {stack.token('tenant-a', Role.DEVICE_GATEWAY)}", **JSON}
    admin = {"Authorization": f"Bearer {stack.token('tenant-a', Role.ADMIN)}", **JSON}
    before = await end_offsets(stack.kafka)
    async with httpx.AsyncClient(base_url=api.url) as http:
        for spelt, meant in (("tech%0A", "tech\n"), ("%2E", "."), ("%2E%2E", ".."), ("te%20ch", "te ch")):
            fix = await http.post(
                f"{PREFIX}/technicians/{spelt}/location", headers=gateway, json={"latitude": 1.0, "longitude": 2.0}
            )
            put = await http.put(f"{PREFIX}/technicians/{spelt}", headers=admin, json={"name": "Someone"})
            batch = await http.post(
                BATCH, headers=gateway, json=_batch(1) | {"fixes": [{**_batch(1)["fixes"][0], "technician_id": meant}]}
            )
            assert (fix.status_code, put.status_code, batch.status_code) == (422, 422, 422), (meant, fix.text, put.text)
            for answer in (fix, put, batch):
                assert "technician_id" in answer.json()["message"], answer.text
    assert await end_offsets(stack.kafka) == before


async def test_spaces_after_bearer_make_no_fresh_rate_limit_bucket(stack: Stack) -> None:
    stack.env["LOCSTREAM_PRODUCERS_TOKEN_RATE"] = "0.001"
    stack.env["LOCSTREAM_PRODUCERS_TOKEN_BURST"] = "1"
    api = await stack.start("producers")
    token = stack.token("tenant-a", Role.TECHNICIAN, sub="tech-1")
    statuses = []
    async with httpx.AsyncClient(base_url=api.url) as http:
        for header in (f"Bearer {token}", f"Bearer  {token}", f"bearer {token}", f"BEARER    {token}"):
            answer = await http.post(
                f"{PREFIX}/technicians/tech-1/location",
                json={"latitude": 1.0, "longitude": 2.0},
                headers={"Authorization": header},
            )
            statuses.append(answer.status_code)
    assert statuses == [202, 429, 429, 429]


async def _abort_mid_body(port: int, token: str) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    body = b'{"latitude": 1.0, "longitude": 2.0}'
    writer.write(
        f"POST {PREFIX}/technicians/tech-1/location HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        + body[:10]
    )
    await writer.drain()
    await asyncio.sleep(0.05)  # the API has read the head and waits for the rest of the body
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # a reset, as a phone losing signal
    writer.transport.abort()


async def test_clients_dropping_mid_body_cost_one_log_line_each_and_record_nothing(stack: Stack) -> None:
    api = await stack.start("producers")
    token = stack.token("tenant-a", Role.TECHNICIAN, sub="tech-1")
    before_lines, before = len(api.log().splitlines()), await end_offsets(stack.kafka)
    for start in range(0, 500, 100):
        await asyncio.gather(*(_abort_mid_body(api.port, token) for _ in range(start, start + 100)))

    async def all_logged() -> bool:
        return api.log().count("went away before sending its whole body") >= 500

    await eventually(all_logged, timeout=20, what="a line for each dropped client")
    log = api.log()
    assert "Traceback" not in log and "ClientDisconnect" not in log
    assert len(log.splitlines()) - before_lines <= 500  # one line per dropped client, nothing more
    assert await end_offsets(stack.kafka) == before


async def test_a_trickled_body_is_answered_408_at_its_deadline(stack: Stack) -> None:
    stack.env["LOCSTREAM_PRODUCERS_BODY_TIMEOUT_SECONDS"] = "1"
    api: Service = await stack.start("producers")
    token = stack.token("tenant-a", Role.TECHNICIAN, sub="tech-1")
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    body = b'{"latitude": 1.0, "longitude": 2.0}'
    writer.write(
        f"POST {PREFIX}/technicians/tech-1/location HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        + body[:5]
    )
    answer = await asyncio.wait_for(reader.read(), 10)  # the API answers and closes: no more body is awaited
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408") and b"not complete within 1 s" in answer


async def test_concurrent_big_batches_on_a_healthy_broker_are_all_acknowledged(stack: Stack) -> None:
    stack.env["LOCSTREAM_PRODUCERS_TOKEN_RATE"] = "0"
    stack.env["LOCSTREAM_PRODUCERS_TENANT_RATE"] = "0"
    stack.env["LOCSTREAM_PRODUCERS_ACK_TIMEOUT_SECONDS"] = "60"  # only aiokafka's own timeout could fail them
    api = await stack.start("producers")
    headers = {"Authorization": f"Bearer {stack.token('tenant-a', Role.DEVICE_GATEWAY)}"}
    bodies = [_batch(1_000) for _ in range(80)]
    before = await end_offsets(stack.kafka)
    async with httpx.AsyncClient(base_url=api.url, timeout=120) as http:
        answers = await asyncio.gather(*(http.post(BATCH, json=body, headers=headers) for body in bodies))
    failed = [answer.text[:200] for answer in answers if answer.status_code != 202]
    assert failed == [], f"{len(failed)} of 80 failed: {failed[:2]}"
    after = await end_offsets(stack.kafka)
    assert sum(after.values()) - sum(before.values()) == 80_000


async def test_failed_authentications_are_limited_per_client_address_on_every_ingest_path(stack: Stack) -> None:
    """Wrong device keys were answered 401 at 404 tries a second, for ever: each try costs the API a lookup."""
    api = await stack.start("producers", env={"LOCSTREAM_PRODUCERS_FAILED_AUTH_BURST": "10"})
    admin = {"Authorization": f"Bearer {stack.token('tenant-a', Role.ADMIN)}"}
    technician = {"Authorization": f"Bearer {stack.token('tenant-a', Role.TECHNICIAN, sub='tech-1')}"}
    fix = {"latitude": 6.5, "longitude": 3.3}
    location = f"{PREFIX}/technicians/tech-1/location"
    async with httpx.AsyncClient(base_url=api.url) as http:
        key = (await http.post(f"{PREFIX}/devices", json={"technician_id": "tech-1"}, headers=admin)).json()["key"]
        before = await end_offsets(stack.kafka)
        guesses = [await http.get(f"/api/v1/ingest/osmand?id=guess-{i}&lat=1&lon=2") for i in range(10)]
        assert [answer.status_code for answer in guesses] == [401] * 10
        limited = [
            await http.get("/api/v1/ingest/osmand?id=guess-11&lat=1&lon=2"),
            await http.post("/api/v1/ingest/overland", json={"locations": []}, headers={"Authorization": "Bearer x"}),
            await http.post("/api/v1/ingest/owntracks", json={}, headers={"Authorization": "Basic eDp5"}),
            await http.post(location, json=fix, headers={"Authorization": "Bearer forged"}),
            await http.post(location, json=fix, headers=technician),  # never verified here yet: not known good
            await http.post(BATCH, json=_batch(1), headers=technician),
        ]
        for answer in limited:
            assert answer.status_code == 429 and "failed authentications" in answer.text, answer.text
            assert int(answer.headers["retry-after"]) >= 1
        assert await end_offsets(stack.kafka) == before  # nothing recorded while the address was limited
        # Credentials known good are not held back by the address's failures (a NAT, a proxy): a device's key, and
        # a token this process verified lately (the admin's, above).
        assert (await http.get(f"/api/v1/ingest/osmand?id={key}&lat=1&lon=2")).status_code == 200
        assert (await http.get(f"{PREFIX}/devices", headers=admin)).status_code == 200
    # Another address is not held back by this one's failures.
    elsewhere = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=api.url, transport=elsewhere) as http:
        assert (await http.post(location, json=fix, headers=technician)).status_code == 202
    async with httpx.AsyncClient(base_url=api.url) as http:

        async def let_in() -> bool:  # the budget refills at 2 failures a second
            return (await http.post(location, json=fix, headers=technician)).status_code == 202

        await eventually(let_in, timeout=10, what="the address's failure budget to refill")
