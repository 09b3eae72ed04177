"""Backpressure, honestly: with the broker gone the API answers 503 (never 202) within the ack timeout, and every
fix it did answer 202 is in the topic once the broker is back. Runs on a broker of its own, which it stops."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from launch import broker
from launch.broker_config import BrokerConfig
from schemas.claims import Role
from tests.support.kafka_io import read_all
from tests.support.stack import Service, Stack, eventually

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Answer:
    sent: float
    answered: float
    status: int
    event_id: str
    retry_after: str | None


async def _load(api: Service, token: str, answers: list[Answer], stop: asyncio.Event) -> None:
    """One client posting fixes back to back (each with its own event_id) until ``stop``."""
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        while not stop.is_set():
            event_id = str(uuid.uuid4())
            sent = time.monotonic()
            response = await client.post(
                "/api/v1/field-service/technicians/tech-1/location",
                json={"latitude": 6.5, "longitude": 3.4, "event_id": event_id},
                headers={"Authorization": f"Bearer {token}"},
            )
            answers.append(
                Answer(sent, time.monotonic(), response.status_code, event_id, response.headers.get("retry-after"))
            )
            await asyncio.sleep(0.02)


@pytest.mark.serial
async def test_broker_stopped_under_load_gives_503_within_6_s_and_every_202_is_kept(
    stack: Stack, tmp_path: Path
) -> None:
    own = BrokerConfig(data_dir=tmp_path / "broker", port=broker.free_port_pair())
    await asyncio.to_thread(broker.start, own)
    try:
        stack.env["KAFKA_BOOTSTRAP_SERVERS"] = own.bootstrap
        stack.kafka = stack.kafka.model_copy(update={"bootstrap_servers": own.bootstrap})
        api = await stack.start("producers")
        token = stack.token("tenant-a", Role.DEVICE_GATEWAY)
        answers: list[Answer] = []
        stop = asyncio.Event()
        clients = [asyncio.create_task(_load(api, token, answers, stop)) for _ in range(4)]
        await eventually(_at_least(answers, 202, 50), timeout=30, what="a steady load acknowledged")

        await asyncio.to_thread(broker.stop, own)
        stopped = time.monotonic()
        await eventually(_at_least(answers, 503, 8, after=stopped), timeout=30, what="503s with the broker down")
        restarting = time.monotonic()  # from here on a broker may acknowledge again
        await asyncio.to_thread(broker.start, own)
        restarted = time.monotonic()
        await eventually(_at_least(answers, 202, 20, after=restarted), timeout=120, what="202s with the broker back")
        stop.set()
        await asyncio.gather(*clients)

        refused = [a for a in answers if a.status == 503 and a.answered > stopped]
        assert min(a.answered for a in refused) - stopped < 6.0  # the switch to 503 within 6 s
        assert all(a.retry_after for a in refused)
        down = [a for a in answers if stopped < a.sent and a.answered < restarting]
        assert down and all(a.status == 503 for a in down)  # no 202 while no broker could acknowledge
        assert {a.status for a in answers} <= {202, 503}
        in_topic = {str(event.event_id) for event, _ in await read_all(stack.kafka)}
        acknowledged = {a.event_id for a in answers if a.status == 202}
        assert acknowledged <= in_topic  # every 202 survived the broker's restart
    finally:
        await asyncio.to_thread(broker.stop, own)


def _at_least(answers: list[Answer], status: int, count: int, after: float = 0.0) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return sum(1 for a in answers if a.status == status and a.answered > after) >= count

    return probe
