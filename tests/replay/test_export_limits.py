"""The HTTP export under attack, against a real broker and projector: a tenant named in any script, caps on exports
at once (per tenant and per process, 429 with Retry-After), and every export's Kafka consumer let go however it
ends (finished, refused, or the client gone before or during the body)."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote, urlencode

import httpx
import pytest

from locstream.kafka import ensure_topic
from locstream.settings import KafkaSettings
from replay.formats import FORMATS
from schemas.claims import Role
from tests.support.events import location
from tests.support.kafka_io import produce
from tests.support.stack import Service, Stack, eventually

pytestmark = pytest.mark.integration

CYRILLIC = "Тенант-東京"  # outside Latin-1: its Content-Disposition used to fail with a 500 and leak the consumer
BIG = "big-fleet"
OTHER = "other-fleet"


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _open_files(service: Service) -> int:
    return len(list(Path(f"/proc/{service.process.pid}/fd").iterdir()))


async def _fill(kafka: KafkaSettings, tenant: str, fixes: int) -> None:
    now = datetime.now(UTC)
    await produce(
        kafka,
        [location(tenant, f"tech-{i % 50}", now - timedelta(seconds=fixes - i), 6.5, 3.3) for i in range(fixes)],
    )


def _held_export(service: Service, query: str, token: str) -> socket.socket:
    """An export whose client reads its headers and then nothing: the server stays in its body, its slot taken."""
    held = socket.create_connection(("127.0.0.1", service.port))
    held.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    request = (
        f"GET /api/v1/field-service/history/export?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    )
    held.sendall(request.encode())
    assert held.recv(12) == b"HTTP/1.1 200"
    return held


async def test_exports_are_capped_per_tenant_and_per_process_and_every_one_lets_go_of_its_consumer(
    stack: Stack, kafka: KafkaSettings
) -> None:
    await ensure_topic(kafka)
    start = _iso(datetime.now(UTC) - timedelta(minutes=10))
    await _fill(kafka, BIG, 30_000)  # about 9 MB of NDJSON: more than the socket buffers hold
    await _fill(kafka, CYRILLIC, 20)
    await _fill(kafka, OTHER, 20)
    end = _iso(datetime.now(UTC) + timedelta(seconds=1))
    projector = await stack.start(
        "projector",
        env={"LOCSTREAM_PROJECTOR_MAX_EXPORTS_PER_TENANT": "1", "LOCSTREAM_PROJECTOR_MAX_EXPORTS": "2"},
    )
    url = f"{projector.url}/api/v1/field-service/history/export"

    def auth(tenant: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {stack.token(tenant, Role.ANALYST)}"}

    async with httpx.AsyncClient(timeout=30) as client:
        named = await client.get(url, params={"from": start, "to": end, "format": "geojson"}, headers=auth(CYRILLIC))
        assert named.status_code == 200, named.text
        disposition = named.headers["content-disposition"]
        encoded = disposition.split("filename*=UTF-8''")[1]
        assert unquote(encoded).startswith(CYRILLIC + "-") and unquote(encoded).endswith(".geojson")
        assert disposition.startswith('attachment; filename="') and disposition.isascii()
        assert len(named.json()["features"]) > 0
        baseline = _open_files(projector)

        big_query = urlencode({"from": start, "to": end, "format": "ndjson"})
        held = await asyncio.to_thread(_held_export, projector, big_query, stack.token(BIG, Role.ANALYST))
        try:
            again = await client.get(url, params={"from": start, "to": end}, headers=auth(BIG))
            assert again.status_code == 429 and "per tenant" in again.text
            assert again.headers["retry-after"].isdigit()
            async with client.stream("GET", url, params={"from": start, "to": end}, headers=auth(OTHER)) as other:
                assert other.status_code == 200  # another tenant is not kept out by the first one's export
                third = await client.get(url, params={"from": start, "to": end}, headers=auth(CYRILLIC))
                assert third.status_code == 429 and "on this node" in third.text
                await other.aread()
        finally:
            held.close()  # the client gone mid-body: its slot and consumer are let go

        async def freed() -> bool:
            answer = await client.get(url, params={"from": start, "to": end}, headers=auth(BIG))
            return answer.status_code == 200

        await eventually(freed, timeout=20, what="the abandoned export's slot to be freed")

        # Exports cancelled mid-stream at every format, refused ones, finished ones: no descriptor stays behind.
        for round_ in range(3):
            for name in FORMATS:
                params = {"from": start, "to": end, "format": name}
                async with client.stream("GET", url, params=params, headers=auth(BIG)) as cut:
                    assert cut.status_code == 200
                    async for _ in cut.aiter_raw():
                        break  # gone after the first chunk
                refused = await client.get(url, params={**params, "to": "9999-12-31T23:59:59-23:59"}, headers=auth(BIG))
                assert refused.status_code == 422
                whole = await client.get(url, params=params, headers=auth(CYRILLIC))
                assert whole.status_code == 200, (round_, name, whole.text)

        async def settled() -> bool:
            return _open_files(projector) <= baseline + 2

        await eventually(settled, timeout=20, what=f"the projector's descriptors back to {baseline}")
    assert "Unclosed AIOKafkaConsumer" not in projector.log()
