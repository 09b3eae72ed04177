"""The scenarios: each function is one run of one parameter point against one running system.

A run returns flat metrics; the harness repeats runs, takes medians and spread, and compares systems.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.big_tenant import measure as measure_big_tenant
from bench.drivers import WsClients, http_load
from bench.export import measure as measure_export
from bench.geofencing import measure as measure_geofencer
from bench.map_page import measure as measure_map_page
from bench.observer import KafkaObserver
from bench.procstats import CpuWindow, rss_bytes, tcp_socket_memory_bytes
from bench.projection import measure as measure_projection
from bench.soak import measure_soak
from bench.systems import RunningSystem, token
from locstream.lifecycle import cancel_and_wait
from schemas.claims import Role

Metrics = dict[str, Any]
# Every fix of a run goes to a technician of its own: two fixes of one technician reordered by a saturated API
# would make the older one a late fix, which a correct system does not push, and the run would count it lost.
UNIQUE = 1_000_000
RunFn = Callable[[RunningSystem, dict[str, Any], "BenchContext"], Awaitable[Metrics]]


@dataclass
class BenchContext:
    """What every run may use besides the system under test."""

    bootstrap: str
    workdir: Path
    postgres: Callable[[], Awaitable[str]]  # the admin DSN of a throwaway PostgreSQL server, started on first use


@dataclass(frozen=True)
class Scenario:
    name: str
    run: RunFn
    points: dict[str, list[dict[str, Any]]]  # size -> parameter points
    headline: str  # the metric compared across systems
    higher_is_better: bool = True
    what: str = ""
    notes: list[str] = field(default_factory=list)
    systems: tuple[str, ...] | None = None  # None: every system; else only these
    standalone: bool = False  # the run starts what it measures itself; no system is started for it
    fresh_per_run: bool = False  # start the system anew for every run, with no warm-up (memory figures)
    once: bool = False  # one run, no warm-up, whatever --runs says (an hour-long soak)
    settings: dict[str, str] = field(default_factory=dict)  # environment the system's services start with


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


async def export(system: RunningSystem, p: dict[str, Any], ctx: BenchContext) -> Metrics:
    """``locstream replay`` exporting a tenant's history of N events to NDJSON."""
    return await measure_export(ctx.bootstrap, p["events"], p["tenants"], ctx.workdir)


async def geofencer(system: RunningSystem, p: dict[str, Any], ctx: BenchContext) -> Metrics:
    """Fixes evaluated per second by one geofence processor with F fences in a tenant, and its CPU per fix."""
    return await measure_geofencer(ctx.bootstrap, p, ctx.workdir)


async def big_tenant(system: RunningSystem, p: dict[str, Any], ctx: BenchContext) -> Metrics:
    """Initial states of tenants of tens of thousands of technicians on one edge process (``bench/big_tenant.py``)."""
    return await measure_big_tenant(ctx.bootstrap, p, ctx.workdir)


async def map_page(system: RunningSystem, p: dict[str, Any], ctx: BenchContext) -> Metrics:
    """The dispatch map in headless Chromium with N technicians and R updates/s, and plain Leaflet beside it."""
    return await measure_map_page(ctx.bootstrap, p, ctx.workdir)


async def soak(system: RunningSystem, p: dict[str, Any], ctx: BenchContext) -> Metrics:
    """An ordinary working day at a fixed load, and every service's memory over it (``bench/soak.py``)."""
    return await measure_soak(system, p)


async def projection(system: RunningSystem, p: dict[str, Any], ctx: BenchContext) -> Metrics:
    """A backlog of N events applied by a fresh projector into SQLite and PostgreSQL, a SQLite rebuild, and a pair."""
    return await measure_projection(ctx.bootstrap, await ctx.postgres(), p["events"], ctx.workdir)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "ingest",
            ingest,
            {
                "small": [{"concurrency": 4, "duration": 2}],
                "full": [{"concurrency": 32, "duration": 10}, {"concurrency": 512, "duration": 10}],
            },
            headline="events_per_second",
            what="single-fix POSTs, closed loop; events/s acknowledged and CPU-µs per event of the API process",
        ),
        Scenario(
            "ingest-batch",
            ingest,
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
        ),
        Scenario(
            "devices",
            devices,
            {
                "small": [{"concurrency": 4, "duration": 2, "batch": 50}],
                "full": [{"concurrency": 32, "duration": 10, "batch": 200}],
            },
            headline="osmand_fixes_per_second",
            what="the tracking apps' endpoints beside the native single-fix POST in the same run: fixes/s and the API's"
            " CPU-µs per fix (Overland in batches of 200, its default)",
            systems=("locstream",),
        ),
        Scenario(
            "fanout",
            fanout,
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
        ),
        Scenario(
            "edge-scale",
            fanout,
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
        ),
        Scenario(
            "fanout-v2",
            fanout,
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
        ),
        Scenario(
            "latency",
            latency,
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
        ),
        Scenario(
            "connections",
            connections,
            {"small": [{"clients": 200}], "full": [{"clients": 1000}, {"clients": 5000}, {"clients": 15000}]},
            headline="rss_bytes_per_connection",
            higher_is_better=False,
            fresh_per_run=True,  # a process that already held N connections keeps that memory in its allocator
            what="N idle dispatchers; (RSS at N - RSS at 100) / (N - 100) of the fan-out process",
        ),
        Scenario(
            "slow-client",
            slow_client,
            {
                "small": [{"clients": 100, "rate": 20, "duration": 2}],
                "full": [{"clients": 1000, "rate": 10, "duration": 15}],  # 10,000 deliveries/s: below every ceiling
            },
            headline="p99_ratio",
            higher_is_better=False,
            what="1000 dispatchers of which 1% stop reading; others' p99 with them / without them",
        ),
        Scenario(
            "reconnect-storm",
            reconnect_storm,
            {
                "small": [{"clients": 50, "technicians": 20}],
                "full": [{"clients": 1000, "technicians": 200}, {"clients": 5000, "technicians": 200}],
            },
            headline="seconds_until_all_initial_state",
            higher_is_better=False,
            what="N dispatchers connect at once to a tenant of 200 technicians; time until all have initial_state",
        ),
        Scenario(
            "big-tenant",
            big_tenant,
            {
                "small": [{"big": 3_000, "crowd_tenant": 2_000, "dispatchers": 10}],
                "full": [{"big": 50_000, "crowd_tenant": 20_000, "dispatchers": 200}],
            },
            headline="loop_hold_max_ms_v1",
            higher_is_better=False,
            what="a tenant of N technicians: the longest pong wait of another client while one dispatcher reads its"
            " initial_state (v1; v2 with permessage-deflate); its size on the wire; 200 dispatchers of a tenant of"
            " M at once: the edge's RSS growth against one encoding of that map",
            notes=[
                "targets (issue 20): the loop held <= 50 ms at a time for 50,000; RSS growth <= one shared encoding for"
                " 200 dispatchers of 20,000; v2 initial_state <= 1 MB for 20,000"
            ],
            systems=("locstream",),
            standalone=True,
        ),
        Scenario(
            "map-page",
            map_page,
            {
                "small": [{"technicians": 500, "per_second": 100, "seconds": 3}],
                "full": [{"technicians": 10_000, "per_second": 1_000, "seconds": 60}],
            },
            headline="frame_ms_p95",
            higher_is_better=False,
            what="/map in headless Chromium: a tenant of N technicians, then R updates/s over v2 for S s; frame time,"
            " long tasks and JS heap measured in the page; then the same for plain Leaflet (one canvas circle marker"
            " per technician, moved on every update)",
            notes=[
                "target (issue 22): p95 frame time <= 33 ms, no long task over 100 ms, heap <= 200 MB at 10,000"
                " technicians and 1,000 updates/s"
            ],
            systems=("locstream",),
            standalone=True,
        ),
        Scenario(
            "export",
            export,
            {
                "small": [{"events": 2_000, "tenants": 1}],
                "full": [{"events": 1_000_000, "tenants": 1}, {"events": 1_000_000, "tenants": 10}],
            },
            headline="events_per_second",
            what="locstream replay exports one tenant's range of a one-partition topic of N fixes (2% retried) to"
            " NDJSON; tenants: how many share the partition",
            systems=("locstream",),
            standalone=True,
        ),
        Scenario(
            "projector",
            projection,
            {"small": [{"events": 2_000}], "full": [{"events": 1_000_000}]},
            headline="sqlite_events_per_second",
            what="a backlog of N events (2% retries) applied by a fresh projector process; then a SQLite rebuild;"
            " then two projector processes in one consumer group on a fresh SQLite file",
            systems=("locstream",),
            standalone=True,
        ),
        Scenario(
            "geofencer",
            geofencer,
            {
                "small": [{"fences": 1_000, "technicians": 200, "fixes": 60_000}],
                "full": [{"fences": 10_000, "technicians": 1_000, "fixes": 300_000}],
            },
            headline="processor_fixes_per_second",
            what="a backlog of N fixes of one tenant with F circular fences (60-250 m) across a metro area, read by"
            " one geofencer process; and the rule alone in the bench's process (core_*)",
            notes=["target: >= 50,000 fixes/s with 10,000 fences in a tenant (issue 19)"],
            systems=("locstream",),
            standalone=True,
        ),
        Scenario(
            "soak",
            soak,
            {
                "small": [
                    {"duration": 120, "sample_seconds": 10, "technicians": 50, "dispatchers": 100, "reconnecting": 2}
                ],
                "full": [
                    {"duration": 3600, "sample_seconds": 30, "technicians": 50, "dispatchers": 100, "reconnecting": 2}
                ],
            },
            headline="ws-edge_rss_end_mb",
            higher_is_better=False,
            once=True,
            what="an hour (small: 2 minutes) of 50 technicians at a fix a second, 100 dispatchers (2 reconnecting every"
            " 10 s), an export and a paced replay every minute; each service's RSS every 30 s (small: 10 s) and whether"
            " it reached a plateau; soak.svg beside the results draws the curve",
            notes=[
                "the caches that fill with the history are sized to fill within the hour at this load, so that the"
                " curve shows their ceiling: 60,000 recent fixes in the ingest API (20 minutes of fixes), a 16 MiB"
                " SQLite page cache in the projector (docs/operations.md, 'Limits and timeouts')"
            ],
            systems=("locstream",),
            settings={"LOCSTREAM_PRODUCERS_RECENT_FIXES": "60000", "LOCSTREAM_SQLITE_CACHE_MIB": "16"},
        ),
    )
}
