"""The scenarios: each run function (``bench/scenario.py``) is one run of one parameter point against one running
system, its definition above it; those that start what they measure themselves live in modules of their own
(``bench/big_tenant.py``, ``map_page.py``, ``export.py``, ``projection.py``, ``geofencing.py``, ``soak.py``).

A run returns flat metrics; the harness repeats runs, takes medians and spread, and compares systems.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

import bench.big_tenant
import bench.export
import bench.geofencing
import bench.map_page
import bench.projection
import bench.soak  # noqa: F401  (these modules register their scenarios on import)
from bench.drivers import WsClients, http_load
from bench.observer import KafkaObserver
from bench.procstats import CpuWindow, rss_bytes, tcp_socket_memory_bytes
from bench.scenario import REGISTERED, BenchContext, Metrics, Scenario, scenario
from bench.systems import RunningSystem, token
from locstream.lifecycle import cancel_and_wait
from schemas.claims import Role

# Every fix of a run goes to a technician of its own: two fixes of one technician reordered by a saturated API
# would make the older one a late fix, which a correct system does not push, and the run would count it lost.
UNIQUE = 1_000_000


def _viewer() -> str:
    return token(Role.DISPATCHER)


def _writer() -> str:
    return token(Role.DEVICE_GATEWAY)


@asynccontextmanager
async def _with_pilot(system: RunningSystem) -> AsyncIterator[None]:
    """One dispatcher connected alone before the crowd, and kept for the run (for every system alike).

    broadcaster 0.3.1 loses subscribers that arrive together on a channel with none yet: each sees the channel
    empty, awaits the backend's subscribe, then overwrites the others' queue set (``Broadcast.subscribe``), so
    only the last one ever receives. With one subscriber already there, later ones are only added. The pilot
    costs every system one extra delivery per event, which the figures do not count.
    """
    pilot = WsClients(system.ws_url, _viewer(), 1)
    try:
        await pilot.start()
        yield
    finally:
        await pilot.stop()


async def _prime(system: RunningSystem, clients: WsClients, timeout: float = 60.0) -> float:
    """Post probe fixes until every reading client has received one: the path is live end to end.

    Some systems (broadcaster's Kafka backend) start delivering only a while after a subscription; measuring
    before that would count start-up, not steady state. Returns how long priming took.
    """
    began = time.monotonic()
    async with httpx.AsyncClient(base_url=system.api_url, timeout=10.0) as http:
        probe = 0
        while time.monotonic() - began < timeout:
            probe += 1
            await http.post(
                f"/api/v1/field-service/technicians/prime-{probe}/location",
                json={"latitude": 1.0, "longitude": 1.0},
                headers={"Authorization": f"Bearer {_writer()}"},
            )
            await asyncio.sleep(0.1)
            if (await clients.report())["per_connection_min"] >= 1:
                # Probes still in flight must land before the run counts frames: wait until none arrives.
                await _drain(clients, 0, expected=2**62, timeout=10.0)
                return round(time.monotonic() - began, 3)
    raise RuntimeError(f"{system.name}: no update reached every client within {timeout:.0f}s")


async def _drain(clients: WsClients, before: int, expected: int, timeout: float = 15.0) -> dict[str, Any]:
    """Wait until the clients have ``expected`` more updates, or until nothing more arrives; then one report, whose
    latency covers every sample since the load began (the polls in between keep them: before, each poll took the
    samples so far with it, and a system whose last frames came late was judged on a handful)."""
    deadline = time.monotonic() + timeout
    last, still = -1, 0
    while True:
        got = (await clients.report(keep_samples=True))["updates"] - before
        if got >= expected or time.monotonic() > deadline:
            break
        still = still + 1 if got == last else 0
        if still >= 10:  # 1 s without a single new frame: what is missing is lost
            break
        last = got
        await asyncio.sleep(0.1)
    return await clients.report()


@scenario(
    "ingest",
    {
        "small": [{"concurrency": 4, "duration": 2}],
        "full": [{"concurrency": 32, "duration": 10}, {"concurrency": 512, "duration": 10}],
    },
    headline="events_per_second",
    what="single-fix POSTs, closed loop; events/s acknowledged and CPU-µs per event of the API process",
)
@scenario(
    "ingest-batch",
    {
        "small": [{"concurrency": 2, "duration": 2, "batch": 100}],
        "full": [
            {"concurrency": 8, "duration": 10, "batch": 100},
            {"concurrency": 4, "duration": 10, "batch": 1000},
        ],
    },
    headline="events_per_second",
    what="batched POSTs (/locations/batch), closed loop; fixes/s acknowledged and CPU-µs per fix of the API"
    " process; compare with the ingest scenario's seed figure (the seed has no batch endpoint)",
    systems=("locstream",),
)
async def ingest(system: RunningSystem, p: dict[str, Any], ctx: BenchContext) -> Metrics:
    """Closed-loop POSTs (single fixes, or batches of ``batch``): fixes/s acknowledged, the API's CPU per fix."""
    window = CpuWindow(system.pids())
    window.start()
    load = await http_load(
        system.api_url, _writer(), duration=p["duration"], concurrency=p["concurrency"], batch=p.get("batch", 0)
    )
    cpu = window.stop()
    accepted = max(load["fixes_accepted"], 1)
    return {
        "events_per_second": load["fixes_per_second"],
        "api_cpu_us_per_event": round(cpu[system.api_role] / accepted * 1e6, 2),
        "all_cpu_us_per_event": round(sum(cpu.values()) / accepted * 1e6, 2),
        "post_latency": load["latency"],
        "statuses": load["statuses"],
        "cpu_seconds": cpu,
    }


@scenario(
    "devices",
    {
        "small": [{"concurrency": 4, "duration": 2, "batch": 50}],
        "full": [{"concurrency": 32, "duration": 10, "batch": 200}],
    },
    headline="osmand_fixes_per_second",
    what="the tracking apps' endpoints beside the native single-fix POST in the same run: fixes/s and the API's"
    " CPU-µs per fix (Overland in batches of 200, its default)",
    systems=("locstream",),
)
async def devices(system: RunningSystem, p: dict[str, Any], ctx: BenchContext) -> Metrics:
    """One device, closed loop, one endpoint after the other in the same run: the native single-fix POST, then the
    tracking apps' endpoints (OsmAnd as the legacy apps send it, OwnTracks, Overland batches of ``batch``); fixes/s
    acknowledged and the API process's CPU-µs per fix of each, and each app's figures relative to the native one."""
    admin = {"Authorization": f"Bearer {token(Role.ADMIN)}"}
    async with httpx.AsyncClient(base_url=system.api_url, timeout=30) as http:
        answer = await http.post("/api/v1/field-service/devices", json={"technician_id": "bench-device"}, headers=admin)
        answer.raise_for_status()
        key = answer.json()["key"]
    metrics: Metrics = {}
    for protocol in ("native", "osmand", "owntracks", "overland"):
        window = CpuWindow(system.pids())
        window.start()
        load = await http_load(
            system.api_url,
            _writer(),
            duration=p["duration"],
            concurrency=p["concurrency"],
            protocol=protocol,
            device_key=key,
            batch=p["batch"] if protocol == "overland" else 0,
        )
        cpu = window.stop()
        accepted = max(load["fixes_accepted"], 1)
        metrics[f"{protocol}_fixes_per_second"] = load["fixes_per_second"]
        metrics[f"{protocol}_api_cpu_us_per_fix"] = round(cpu[system.api_role] / accepted * 1e6, 2)
        metrics[f"{protocol}_statuses"] = load["statuses"]
    for protocol in ("osmand", "owntracks", "overland"):
        metrics[f"{protocol}_cpu_vs_native"] = round(
            metrics[f"{protocol}_api_cpu_us_per_fix"] / max(metrics["native_api_cpu_us_per_fix"], 1e-9), 3
        )
    return metrics


@scenario(
    "fanout",
    {
        "small": [{"clients": 10, "rate": 20, "duration": 2}],
        "full": [
            {"clients": 100, "rate": 500, "duration": 10},
            {"clients": 1000, "rate": 50, "duration": 10},
            {"clients": 10000, "rate": 5, "duration": 10},
        ],
    },
    headline="deliveries_per_cpu_second",
    what="one tenant, N dispatchers, a fixed event rate (N x rate = 50,000 deliveries/s offered)",
)
@scenario(
    "edge-scale",
    {
        "small": [{"clients": 20, "rate": 10, "duration": 2}, {"clients": 60, "rate": 4, "duration": 2}],
        "full": [
            {"clients": 1000, "rate": 50, "duration": 10},
            {"clients": 5000, "rate": 10, "duration": 10},
            {"clients": 15000, "rate": 3.4, "duration": 10},
        ],
    },
    headline="cpu_us_per_delivery",
    higher_is_better=False,
    what="v1 fanout at 1k, 5k and 15k dispatchers of one tenant, about 50,000 deliveries/s offered at each:"
    " CPU-µs per delivery against the send() floor of the same moment, and RSS per connection; 50,000"
    " connections cannot be held here (one process may open 20,000 descriptors, a hard limit)",
    fresh_per_run=True,
)
@scenario(
    "fanout-v2",
    {
        "small": [{"clients": 10, "rate": 20, "duration": 2, "protocol": 2}],
        "full": [
            {"clients": 1000, "rate": 50, "duration": 10, "protocol": 2},
            {"clients": 1000, "rate": 500, "duration": 10, "protocol": 2},
        ],
    },
    headline="deliveries_per_cpu_second",
    what="fanout with protocol v2 (location_batch frames): deliveries = updates inside the batches",
    systems=("locstream",),
)
async def fanout(system: RunningSystem, p: dict[str, Any], ctx: BenchContext) -> Metrics:
    """N dispatchers of one tenant, a fixed event rate: deliveries/s, CPU per delivery, frames lost."""
    sources = max(1, p["clients"] // 20_000 + 1)
    url = system.ws_url + ("?protocol=2" if p.get("protocol") == 2 else "")  # v2: locstream's batched frames
    pid = system.processes[system.fanout_role].pid
    async with _with_pilot(system):
        rss_before = rss_bytes(pid)
        async with WsClients(url, _viewer(), p["clients"], sources=sources) as clients:
            rss_connected = rss_bytes(pid)
            return await _fan_out(system, p, clients, (rss_connected - rss_before) / p["clients"])


async def _fan_out(system: RunningSystem, p: dict[str, Any], clients: WsClients, rss_per_client: float) -> Metrics:
    """The measured window of ``fanout``, with ``clients`` connected and the fan-out's RSS growth for them."""
    primed = await _prime(system, clients)
    before = (await clients.report())["updates"]
    window = CpuWindow(system.pids())
    window.start()
    began = time.monotonic()
    load = await http_load(system.api_url, _writer(), duration=p["duration"], rate=p["rate"], technicians=UNIQUE)
    expected = load["accepted"] * clients.ready["connected"]
    report = await _drain(clients, before, expected)
    elapsed = time.monotonic() - began
    cpu = window.stop()
    delivered = report["updates"] - before
    fanout_cpu = cpu[system.fanout_role]
    per_delivery = fanout_cpu / max(delivered, 1) * 1e6
    v1, sockets = p.get("protocol") != 2, min(p["clients"], 1000)
    floor = await send_floor(sockets) if v1 else None
    paced = await send_floor(sockets, rounds=max(20, min(100, int(p["rate"] * 2))), rate=p["rate"]) if v1 else None
    return {
        "deliveries_per_second": round(delivered / elapsed, 1),
        "deliveries_per_cpu_second": round(delivered / fanout_cpu, 1) if fanout_cpu else None,
        "cpu_us_per_delivery": round(per_delivery, 3),
        "floor_us_per_send": floor["us_per_send"] if floor else None,  # bench/send_floor.py, right after the window
        "cpu_vs_floor": round(per_delivery / floor["us_per_send"], 3) if floor else None,
        "paced_floor_us_per_send": paced["us_per_send"] if paced else None,  # at the event rate, to a sleeping reader
        "cpu_vs_paced_floor": round(per_delivery / paced["us_per_send"], 3) if paced else None,
        "frames_lost": expected - delivered,
        "events_accepted": load["accepted"],
        "connected": clients.ready["connected"],
        "rss_bytes_per_connection": round(rss_per_client),  # the fan-out process's, connected and idle
        "prime_seconds": primed,
        "closes": report["closes"],
        "latency": report["latency"],
        "cpu_seconds": cpu,
    }


async def send_floor(sockets: int, rounds: int = 100, rate: float = 0.0) -> dict[str, float]:
    """``bench/send_floor.py`` as a process of its own: CPU per ``send()`` of a 250-byte frame to ``sockets``, back
    to back or ``rate`` rounds a second."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "bench.send_floor", "--sockets", str(sockets), "--rounds", str(rounds)),
        *("--rate", str(rate), "--json"),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    floor: dict[str, float] = json.loads(out)
    return floor


@scenario(
    "latency",
    {
        "small": [{"clients": 10, "rate": 20, "duration": 2, "sample_every": 1}],
        "full": [
            {"clients": 1000, "rate": 10, "duration": 10},  # 10,000 deliveries/s: below every ceiling
            {"clients": 1000, "rate": 100, "duration": 10},
            {"clients": 1000, "rate": 1000, "duration": 10},  # the target's load
        ],
    },
    headline="p99_ms",
    higher_is_better=False,
    what="open-loop events, 1000 dispatchers; POST sent -> frame read (sampled on every 20th connection)",
)
async def latency(system: RunningSystem, p: dict[str, Any], ctx: BenchContext) -> Metrics:
    """Open-loop events with N dispatchers: POST sent -> frame read, and the part of it spent getting to Kafka."""
    observer = KafkaObserver(ctx.bootstrap, system.kafka_topic) if system.kafka_topic else None
    sample_every = p.get("sample_every", 20)
    async with (
        _with_pilot(system),
        WsClients(system.ws_url, _viewer(), p["clients"], sample_every=sample_every) as clients,
    ):
        await _prime(system, clients)
        before = (await clients.report())["updates"]  # also clears the samples taken while priming
        if observer is not None:
            await observer.start()
        load = await http_load(system.api_url, _writer(), duration=p["duration"], rate=p["rate"], technicians=UNIQUE)
        expected = load["accepted"] * clients.ready["connected"]
        report = await _drain(clients, before, expected)
        kafka = await observer.stop() if observer is not None else None
    e2e = report["latency"]
    share = round(kafka["p50_ms"] / e2e["p50_ms"], 3) if kafka and kafka.get("count") and e2e.get("count") else None
    return {
        "p50_ms": e2e.get("p50_ms"),
        "p95_ms": e2e.get("p95_ms"),
        "p99_ms": e2e.get("p99_ms"),
        "max_ms": e2e.get("max_ms"),
        "samples": e2e.get("count", 0),
        "to_kafka": kafka,
        "kafka_share_of_p50": share,
        "frames_lost": expected - (report["updates"] - before),
        "events_accepted": load["accepted"],
        "missed_sends": load["missed"],
        "closes": report["closes"],
    }


@scenario(
    "connections",
    {"small": [{"clients": 200}], "full": [{"clients": 1000}, {"clients": 5000}, {"clients": 15000}]},
    headline="rss_bytes_per_connection",
    higher_is_better=False,
    fresh_per_run=True,  # a process that already held N connections keeps that memory in its allocator
    what="N idle dispatchers; (RSS at N - RSS at 100) / (N - 100) of the fan-out process",
)
async def connections(system: RunningSystem, p: dict[str, Any], ctx: BenchContext) -> Metrics:
    """N idle connections: user-space RSS per connection of the fan-out process, and kernel socket memory."""
    pid = system.processes[system.fanout_role].pid
    base_n = 100
    rss0, sock0 = rss_bytes(pid), tcp_socket_memory_bytes()
    first = WsClients(system.ws_url, _viewer(), base_n)
    rest = WsClients(system.ws_url, _viewer(), p["clients"] - base_n, sources=4)
    try:
        await first.start()
        rss_base, sock_base = rss_bytes(pid), tcp_socket_memory_bytes()
        ready = await rest.start()
        rss_n, sock_n = rss_bytes(pid), tcp_socket_memory_bytes()
        connected = ready["connected"] + base_n
    finally:
        await rest.stop()
        await first.stop()
    added = max(connected - base_n, 1)
    return {
        "connected": connected,
        "failed": ready["failed"],
        "rss_bytes_per_connection": round((rss_n - rss_base) / added),
        "rss_mib_at_n": round(rss_n / 2**20, 1),
        "rss_mib_idle": round(rss0 / 2**20, 1),
        "kernel_tcp_bytes_per_connection": round((sock_n - sock_base) / added),  # both loopback ends
        "kernel_tcp_mib_idle": round(sock0 / 2**20, 2),
        "connect_seconds": ready["seconds"],
    }


@scenario(
    "slow-client",
    {
        "small": [{"clients": 100, "rate": 20, "duration": 2}],
        "full": [{"clients": 1000, "rate": 10, "duration": 15}],  # 10,000 deliveries/s: below every ceiling
    },
    headline="p99_ratio",
    higher_is_better=False,
    what="1000 dispatchers of which 1% stop reading; others' p99 with them / without them",
)
async def slow_client(system: RunningSystem, p: dict[str, Any], ctx: BenchContext) -> Metrics:
    """1% of the dispatchers stop reading: the others' p99 against a run without them; fan-out memory over time."""
    results: dict[str, Any] = {}
    pid = system.processes[system.fanout_role].pid
    for label, slow in (("baseline", 0), ("with_slow", max(1, p["clients"] // 100))):
        memory: list[float] = []
        async with (
            _with_pilot(system),
            WsClients(system.ws_url, _viewer(), p["clients"], slow=slow, sample_every=10) as clients,
        ):
            await _prime(system, clients)
            before = (await clients.report())["updates"]
            sampling = asyncio.create_task(_sample_rss(pid, memory))
            load = await http_load(
                system.api_url, _writer(), duration=p["duration"], rate=p["rate"], technicians=UNIQUE
            )
            readers = clients.ready["connected"] - slow
            report = await _drain(clients, before, load["accepted"] * readers)
            await cancel_and_wait(sampling)
        results[label] = {
            "p99_ms": report["latency"].get("p99_ms"),
            "p50_ms": report["latency"].get("p50_ms"),
            "frames_lost_by_readers": load["accepted"] * readers - (report["updates"] - before),
            "closes": report["closes"],
            "rss_mib_samples": memory,
        }
    base_p99, slow_p99 = results["baseline"]["p99_ms"], results["with_slow"]["p99_ms"]
    results["p99_ratio"] = round(slow_p99 / base_p99, 3) if base_p99 and slow_p99 else None
    results["rss_mib_max_with_slow"] = max(results["with_slow"]["rss_mib_samples"], default=None)
    results["frames_lost"] = results["with_slow"]["frames_lost_by_readers"]
    return results


async def _sample_rss(pid: int, into: list[float]) -> None:
    while True:
        into.append(round(rss_bytes(pid) / 2**20, 1))
        await asyncio.sleep(1.0)


@scenario(
    "reconnect-storm",
    {
        "small": [{"clients": 50, "technicians": 20}],
        "full": [{"clients": 1000, "technicians": 200}, {"clients": 5000, "technicians": 200}],
    },
    headline="seconds_until_all_initial_state",
    higher_is_better=False,
    what="N dispatchers connect at once to a tenant of 200 technicians; time until all have initial_state",
)
async def reconnect_storm(system: RunningSystem, p: dict[str, Any], ctx: BenchContext) -> Metrics:
    """N dispatchers connect at once (a node died, its clients come back): time until all have initial_state."""
    await http_load(system.api_url, _writer(), duration=1.0, rate=p["technicians"], technicians=p["technicians"])
    clients = WsClients(system.ws_url, _viewer(), p["clients"], concurrency=p["clients"], sources=4)
    try:
        ready = await clients.start()
    finally:
        await clients.stop()
    return {
        "seconds_until_all_initial_state": ready["seconds"],
        "connected": ready["connected"],
        "failed": ready["failed"],
    }


# The report's order; every scenario registered with ``@scenario`` (here and in the modules above) is in it.
ORDER = (
    "ingest",
    "ingest-batch",
    "devices",
    "fanout",
    "edge-scale",
    "fanout-v2",
    "latency",
    "connections",
    "slow-client",
    "reconnect-storm",
    "big-tenant",
    "map-page",
    "export",
    "projector",
    "geofencer",
    "soak",
)
assert set(ORDER) == set(REGISTERED), set(ORDER) ^ set(REGISTERED)
SCENARIOS: dict[str, Scenario] = {name: REGISTERED[name] for name in ORDER}
