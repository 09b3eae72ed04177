"""Brokers killed, paused and restarted under a steady load, through every layer of locstream.

Each case: the load and the map clients run; the fault happens; halfway through it every map client drops its
socket and resumes on the other edge with its cursor; the cluster is made whole; the load stops. Then: every fix
answered 202 is in the history exactly once, the table equals a fresh replay of the topic, every client's stream is
in offset order with nothing twice and nothing missing, and ``/readyz`` reported the outage. The figures of each
case (seconds to the first 202 and to the first frame after the fault, the longest stretches without) are written
to ``test-artifacts/faults.json`` and printed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from locstream.kafka_cluster import describe_at
from tests.faults.conftest import TECHNICIANS, TENANTS, Rig
from tests.faults.drivers import view_or_none
from tests.faults.harness import (
    CaseFigures,
    Load,
    MapClient,
    ReadinessWatch,
    cancel_all,
    longest_gap,
    settle_and_check,
    until,
)
from tests.support.kafka_io import end_offsets
from tests.support.maps import close_all
from tests.support.stack import eventually

pytestmark = [
    pytest.mark.integration,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.serial,  # deadlines on a cluster under faults: "503 within 6 s" took 6.1-6.3 s among 4 test processes
]

ARTIFACT = Path(__file__).resolve().parents[2] / "test-artifacts" / "faults.json"
FIGURES: dict[str, dict[str, object]] = {}
NOTES: dict[str, str] = {}  # per case, which node was hurt


async def whole(rig: Rig, timeout: float = 120.0) -> None:
    """Until every node is a broker of the cluster again and no partition lacks an in-sync replica."""

    async def ready() -> bool | None:
        now = await view_or_none(rig.cluster.bootstrap)
        return (now is not None and (len(now.brokers) == len(rig.cluster.nodes) and not now.under_replicated)) or None

    await eventually(ready, timeout=timeout, what="the cluster to be whole again")


async def busiest_leader(rig: Rig) -> int:
    """The leader of the topic's partition with the most records (where the most tenants write)."""
    ends = await end_offsets(rig.stack.kafka)
    busiest = max(ends, key=lambda p: ends[p])
    (partition,) = [
        p
        for p in (await describe_at(rig.cluster.bootstrap, [rig.stack.kafka.topic])).partitions
        if p.partition == busiest
    ]
    return partition.leader


async def role_of(rig: Rig, node: int) -> str:
    """What the node was when hurt: a partition leader only, or the active controller as well."""
    now = await describe_at(rig.cluster.bootstrap)
    controller = now.quorum is not None and now.quorum.leader_id == node
    return f"node {node}" + (", the active controller" if controller else ", not the active controller")


async def run_case(rig: Rig, name: str, fault: Callable[[Load], Awaitable[float]]) -> CaseFigures:
    """``fault`` hurts the cluster, makes it whole again and returns when it began hurting (monotonic)."""
    await whole(rig)
    load = Load(rig.api, rig.writers, TECHNICIANS)
    clients = [MapClient(t, rig.viewers[t], edge) for t in TENANTS for edge in (0, 1)]
    watch = ReadinessWatch(rig.services)
    tasks = [asyncio.create_task(c.run(rig.edges)) for c in clients] + [asyncio.create_task(watch.run())]
    try:
        load.start()
        await until(lambda: len(load.acked) >= 40 and all(c.frames for c in clients), 60, "the load to flow")
        tasks.append(hop_later(clients, 2.0))  # inside every fault: each client resumes on the other edge
        fault_began = await fault(load)
        healed = time.monotonic()
        acked_before = len(load.acked)
        await until(lambda: len(load.acked) >= acked_before + 40, 60, "fixes acknowledged after the fault")
        await load.stop()
        ended = time.monotonic()
        await settle_and_check(rig.stack, load, clients, rig.dsn, rig.scratch)
        assert all(c.connects >= 2 for c in clients), "a map client never resumed on the other edge"
    finally:
        await load.cancel()  # (stopped already, unless the case failed midway)
        await cancel_all(tasks)
        await load.stop()
        await close_all()  # in this module's loop: later tests' cleanup must not find these sockets open

    oks = [a.answered for a in load.attempts if a.status == 202 and a.sent >= fault_began]
    updates = [f.at for c in clients for f in c.frames if f.kind == "location_update" and f.at >= fault_began]
    figures = CaseFigures(
        case=name,
        first_202_after_fault_s=round(min(oks) - fault_began, 2) if oks else None,
        longest_without_202_s=round(longest_gap(oks, fault_began, healed), 2),
        answered_503=sum(a.status == 503 for a in load.attempts),
        first_frame_after_fault_s=round(min(updates) - fault_began, 2) if updates else None,
        longest_without_frames_s=round(
            max(
                longest_gap([f.at for f in c.frames if f.kind == "location_update"], fault_began, healed)
                for c in clients
            ),
            2,
        ),
        readyz_reported=any(r.reports_outage for r in watch.readings if fault_began <= r.at <= ended),
        stuck_consumer_reported=any("consumer stuck" in str(r.body.get("reason")) for r in watch.readings),
        fresh_initial_states=sum(sum(f.kind == "initial_state" for f in c.frames) - 1 for c in clients),
        acked=len(load.acked),
    )
    per_tenant = {  # where the stall was: writing (no 202 for the tenant's devices) or reading (no frame on its maps)
        tenant: {
            "without_202_s": round(
                longest_gap(
                    [
                        a.answered
                        for a in load.attempts
                        if a.tenant == tenant and a.status == 202 and a.sent >= fault_began
                    ],
                    fault_began,
                    healed,
                ),
                2,
            ),
            "without_frames_s": round(
                max(
                    longest_gap([f.at for f in c.frames if f.kind == "location_update"], fault_began, healed)
                    for c in clients
                    if c.tenant == tenant
                ),
                2,
            ),
        }
        for tenant in TENANTS
    }
    FIGURES[name] = {**figures.as_dict(), "node": NOTES.get(name, ""), "per_tenant": per_tenant}
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text(json.dumps(FIGURES, indent=2) + "\n")
    print(f"\n{name}: {json.dumps(FIGURES[name])}")  # noqa: T201 (the case's figures, in the test's output)
    assert figures.readyz_reported, f"no /readyz reported the outage of {name}"
    return figures


def hop_later(clients: list[MapClient], seconds: float) -> asyncio.Task[None]:
    async def hop() -> None:
        await asyncio.sleep(seconds)  # a point inside the outage, not a condition to wait for
        for client in clients:
            client.hop()

    return asyncio.create_task(hop())


async def test_the_rf3_topic_is_written_to_two_replicas_at_least(rig: Rig) -> None:
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from locstream.kafka import admin_client

    now = await describe_at(rig.cluster.bootstrap, [rig.stack.kafka.topic])
    assert {len(p.replicas) for p in now.partitions} == {3}
    admin = admin_client(rig.stack.kafka)
    await admin.start()
    try:
        (described,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, rig.stack.kafka.topic)])
    finally:
        await admin.close()
    configs = {entry[0]: entry[1] for entry in described.resources[0][4]}
    assert configs["min.insync.replicas"] == "2"


async def _kill_the_busiest_leader(rig: Rig, load: Load) -> float:
    victim = await busiest_leader(rig)
    NOTES["kill -9 the busiest partition's leader"] = await role_of(rig, victim)
    began = time.monotonic()
    await rig.cluster.kill(victim)

    async def fenced() -> bool | None:
        now = await view_or_none(rig.cluster.bootstrap)
        return (now is not None and victim not in now.brokers) or None

    await eventually(fenced, timeout=30, what="the controller to fence the killed broker")
    await asyncio.sleep(3)  # some load while it stays down: a duration of the fault, not a wait for a condition
    await rig.cluster.start(victim)
    await whole(rig)
    return began


async def _pause_a_broker(rig: Rig, load: Load) -> float:
    victim = await busiest_leader(rig)
    NOTES["SIGSTOP a broker for 20 s"] = await role_of(rig, victim)
    began = time.monotonic()
    await rig.cluster.pause(victim)
    await asyncio.sleep(20)  # the pause is the fault: SIGSTOP held for 20 s
    await rig.cluster.resume(victim)
    await whole(rig)
    return began


async def _kill_the_active_controller(rig: Rig, load: Load) -> float:
    before = await describe_at(rig.cluster.bootstrap)
    assert before.quorum is not None, "DescribeQuorum answered nothing"
    victim = before.quorum.leader_id
    began = time.monotonic()
    await rig.cluster.kill(victim)

    async def new_controller() -> bool | None:
        now = await view_or_none(rig.cluster.bootstrap)
        return (now is not None and now.quorum is not None and now.quorum.leader_id not in (victim, -1)) or None

    await eventually(new_controller, timeout=30, what="another node to become the active controller")
    await asyncio.sleep(3)  # the load goes on under the new controller for a while: the fault's duration
    await rig.cluster.start(victim)
    await whole(rig)
    return began


async def _restart_every_broker_in_turn(rig: Rig, load: Load) -> float:
    began = time.monotonic()
    for node in rig.cluster.nodes:  # one at a time, each back in sync before the next, as operators do it
        await rig.cluster.stop(node)
        await rig.cluster.start(node)
        await whole(rig)
    return began


# The faults a cluster survives with every acknowledged fix kept and every map caught up (``run_case``); each
# hurts the cluster, makes it whole again and returns when it began hurting.
FAULTS: dict[str, Callable[[Rig, Load], Awaitable[float]]] = {
    "kill -9 the busiest partition's leader": _kill_the_busiest_leader,
    "SIGSTOP a broker for 20 s": _pause_a_broker,
    "kill -9 the active controller": _kill_the_active_controller,
    "rolling restart of all three brokers": _restart_every_broker_in_turn,
}


@pytest.mark.parametrize("case", FAULTS)
async def test_a_fault_loses_no_acknowledged_fix_and_every_map_catches_up(rig: Rig, case: str) -> None:
    await run_case(rig, case, lambda load: FAULTS[case](rig, load))


async def test_two_brokers_down_answers_503_and_never_202_until_one_is_back(rig: Rig) -> None:
    windows: dict[str, float] = {}

    async def fault(load: Load) -> float:
        first = await busiest_leader(rig)
        second = next(node for node in rig.cluster.nodes if node != first)
        began = time.monotonic()
        await asyncio.gather(rig.cluster.kill(first), rig.cluster.kill(second))
        windows["both_down"] = time.monotonic()
        await until(
            lambda: any(a.status == 503 and a.sent >= windows["both_down"] for a in load.attempts),
            30,
            "a 503 while two brokers are down",
        )
        await asyncio.sleep(8)  # the outage goes on: every fix sent now must be refused
        windows["restart"] = time.monotonic()
        await rig.cluster.start(first)
        windows["one_back"] = time.monotonic()
        await until(
            lambda: any(a.status == 202 and a.sent >= windows["one_back"] for a in load.attempts),
            60,
            "a 202 once one broker is back",
        )
        await rig.cluster.start(second)
        await whole(rig)
        return began

    async def checked(load: Load) -> float:
        began = await fault(load)
        during = [a for a in load.attempts if windows["both_down"] <= a.sent and a.answered <= windows["restart"]]
        assert during, "no fix was sent while two brokers were down"
        assert not [a for a in during if a.status == 202], "a 202 while only one replica could have the fix"
        slow = [round(a.answered - a.sent, 2) for a in during if a.status != 503 or a.answered - a.sent > 6.0]
        assert not slow, f"answers other than a 503 within 6 s while two brokers were down: {slow}"
        FIGURES_EXTRA["two down: seconds from the second kill to the first 503"] = round(
            min(a.answered for a in during) - windows["both_down"], 2
        )
        FIGURES_EXTRA["two down: seconds from one broker started to the first 202"] = round(
            min(a.answered for a in load.attempts if a.status == 202 and a.sent >= windows["one_back"])
            - windows["restart"],
            2,
        )
        return began

    await run_case(rig, "two brokers down at once", checked)
    ARTIFACT.write_text(json.dumps({**FIGURES, "extra": FIGURES_EXTRA}, indent=2) + "\n")


FIGURES_EXTRA: dict[str, float] = {}
