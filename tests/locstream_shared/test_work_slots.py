"""A tenant's crowd of work (the edge's new sessions, the ingest API's batches) runs a few at a time; another
tenant's does not wait behind it."""

from __future__ import annotations

import asyncio

from locstream.work_slots import TurnsPerTenant


async def test_at_most_the_limit_of_one_tenant_open_at_once_and_another_tenant_does_not_wait() -> None:
    openings = TurnsPerTenant(limit=3)
    inside: dict[str, int] = {"big": 0, "small": 0}
    most: dict[str, int] = {"big": 0, "small": 0}
    release = asyncio.Event()

    async def open_one(tenant: str) -> None:
        async with openings.slot(tenant):
            inside[tenant] += 1
            most[tenant] = max(most[tenant], inside[tenant])
            if tenant == "big":
                await release.wait()
            inside[tenant] -= 1

    crowd = [asyncio.create_task(open_one("big")) for _ in range(20)]
    await asyncio.sleep(0)
    await asyncio.wait_for(open_one("small"), 1)  # not behind the big tenant's 20
    assert most == {"big": 3, "small": 1}
    release.set()
    await asyncio.gather(*crowd)
    assert most["big"] == 3 and openings._waiting == {}  # nothing kept once all have opened
