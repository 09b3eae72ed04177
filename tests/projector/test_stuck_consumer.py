"""The readiness canary for aiokafka #1154 (a consumer that stops after a broker restart without an error): a real
projector whose position stops while its partition's end moves is reported unready, and ready again once it moves.

Its position is stopped for real, not simulated: the test holds an exclusive lock on the projection's tables in
PostgreSQL, so the projector's next batch waits, as a consumer stuck in aiokafka would, while fixes keep arriving.
(The fault suite, ``tests/faults``, restarts brokers under load to look for #1154 itself.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from tests.support.events import location
from tests.support.kafka_io import end_offsets, produce
from tests.support.stack import Stack, eventually

pytestmark = pytest.mark.integration


async def test_a_projector_whose_position_stops_while_records_arrive_is_reported_stuck(
    stack: Stack, postgres_dsn: str
) -> None:
    stack.env["LOCSTREAM_DATABASE_URL"] = postgres_dsn
    projector = await stack.start(
        "projector",
        env={"LOCSTREAM_PROJECTOR_STUCK_AFTER_SECONDS": "3", "LOCSTREAM_PROJECTOR_READY_MAX_LAG": "1000000"},
    )
    now = datetime.now(UTC)
    await produce(
        stack.kafka, [location("acme-fiber", "tech-1", now - timedelta(seconds=60 - i), i / 100) for i in range(5)]
    )

    async def readyz() -> tuple[int, str]:
        async with httpx.AsyncClient(timeout=5) as client:
            answer = await client.get(f"{projector.url}/readyz")
        return answer.status_code, answer.json()["reason"]

    async def applied_all() -> bool | None:
        ends = await end_offsets(stack.kafka)
        offsets = (await stack.snapshot()).offsets
        return all(offsets.get(p, 0) >= end for p, end in ends.items()) or None

    await eventually(applied_all, timeout=30, what="the projector to apply the first fixes")
    assert (await readyz())[0] == 200

    holder = await asyncpg.connect(postgres_dsn)
    try:
        tables = [
            r["tablename"] for r in await holder.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE")
        await produce(
            stack.kafka,
            [location("acme-fiber", "tech-1", now - timedelta(seconds=50 - i), 1 + i / 100) for i in range(5)],
        )

        async def reported_stuck() -> str | None:
            status, reason = await readyz()
            return reason if status == 503 and "consumer stuck on partitions" in reason else None

        reason = await eventually(reported_stuck, timeout=30, what="/readyz to report the stuck consumer")
        assert "for over 3 s" in reason
        await transaction.rollback()
    finally:
        await holder.close()

    await eventually(applied_all, timeout=30, what="the projector to go on once the lock is gone")

    async def ready_again() -> bool | None:
        return (await readyz())[0] == 200 or None

    await eventually(ready_again, timeout=30, what="/readyz to be ready again")
