"""The production topology as processes on one machine: a 6-partition topic, 2 producers, 2 projectors in one
group on PostgreSQL and 2 edges, under a steady load, with one of each role killed (kill -9) at different moments
and restarted. Every acknowledged fix ends in the table (and its history, once); every map client, reconnecting
with its cursor to the surviving edge, ends with the table's view; no client ever gets an update twice."""

from __future__ import annotations

import asyncio

import pytest

from locstream.settings import DataSettings
from projector.backends import make_store
from schemas.claims import Role
from tests.faults.harness import Acked, Load, MapClient, cancel_all, until
from tests.support.kafka_io import end_offsets
from tests.support.stack import Stack, eventually

pytestmark = pytest.mark.integration

TENANTS = ["acme-fiber", "globex-isp", "initech-gas"]
TECHNICIANS = [(tenant, f"tech-{i}") for tenant in TENANTS for i in range(5)]
FIXES = 420
RATE = 35.0  # fixes a second over all the technicians: 12 s of load


async def test_killing_one_of_each_role_loses_nothing_and_duplicates_nothing(stack: Stack, postgres_dsn: str) -> None:
    stack.env["LOCSTREAM_DATABASE_URL"] = postgres_dsn
    projectors = [await stack.start("projector"), await stack.start("projector")]
    api = [await stack.start("producers"), await stack.start("producers")]
    edges = [await stack.start("ws-edge"), await stack.start("ws-edge")]
    writers = {tenant: stack.token(tenant, Role.DEVICE_GATEWAY, ttl=3600) for tenant in TENANTS}
    clients = [MapClient(t, stack.token(t, ttl=3600), edge) for t in TENANTS for edge in (0, 1, 0)]
    watching = [asyncio.create_task(c.run(edges)) for c in clients]
    load = Load(api, writers, TECHNICIANS, per_device_rate=RATE / len(TECHNICIANS))

    async def after(count: int) -> None:
        await until(lambda: len(load.acked) >= count, 60, f"{count} fixes acknowledged")

    try:
        load.start()
        await after(60)
        api[0].kill9()  # a producer, mid-stream
        await after(120)
        api[0] = await stack.start("producers", port=api[0].port)
        await after(160)
        projectors[0].kill9()  # a projector of the group
        await after(240)
        projectors[0] = await stack.start("projector", port=projectors[0].port)
        await after(280)
        edges[0].kill9()  # an edge: its clients go to the other with their cursor
        await after(360)
        edges[0] = await stack.start("ws-edge", port=edges[0].port)
        await after(FIXES)
        await load.stop()
        acked = load.acked
        # the load never stopped: a failed POST went to the other producer
        assert any(attempt.status != 202 for attempt in load.attempts)

        ends = await end_offsets(stack.kafka)

        async def applied() -> bool | None:
            offsets = (await stack.snapshot()).offsets
            return all(offsets.get(p, 0) >= end for p, end in ends.items()) or None

        await eventually(applied, timeout=60, what="the projectors to apply the whole topic")
        snapshot = await stack.snapshot()
        table = {(s.tenant_id, s.technician_id): s for s in snapshot.states}
        latest: dict[tuple[str, str], Acked] = {}
        for fix in acked:
            latest[(fix.tenant, fix.technician)] = fix
        for key, fix in latest.items():  # the last acknowledged fix of every technician is its position
            state = table[key]
            assert state.fix is not None and state.fix.latitude == fix.latitude, (key, state.fix, fix)

        store = make_store(DataSettings(database_url=postgres_dsn), stack.kafka.topic)
        await store.open()
        try:
            for tenant, technician in TECHNICIANS:
                points = await store.history(tenant, technician, None, None, 1_000)
                assert points is not None
                ids = [p.event_id for p in points]
                assert len(ids) == len(set(ids)), "an event twice in the history"
                mine = {f.event_id for f in acked if (f.tenant, f.technician) == (tenant, technician)}
                assert mine <= {str(i) for i in ids}, "an acknowledged fix missing from the history"
        finally:
            await store.close()

        def views_match() -> bool:
            for c in clients:
                expected = {
                    k[1]: (s.fix.latitude, s.fix.longitude)
                    for k, s in table.items()
                    if k[0] == c.tenant and s.fix is not None
                }
                if c.map.positions() != expected:
                    return False
            return True

        async def converged() -> bool | None:
            return views_match() or None

        await eventually(converged, timeout=30, what="every map client to show the table's view")
        assert all(not c.map.repeated for c in clients), [(c.tenant, c.map.repeated) for c in clients]
        assert sum(c.connects > 1 for c in clients) >= len(TENANTS) * 2  # those on the killed edge came back
    finally:
        await load.cancel()
        await cancel_all(watching)
