"""``python -m bench <scenario|all> [--size small|full] [--out DIR] [--systems ...] [--bootstrap HOST:PORT]``.

Starts its own Kafka broker (the project's, from Maven jars; ``--bootstrap`` uses a running one instead) and, for
every scenario point, each system fresh as separate processes; the load generators run in processes of their own.
Nothing is read from earlier runs.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import tempfile
import time
import traceback
from contextlib import ExitStack
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import report
from bench.procstats import cpu_model
from bench.scenario import BenchContext, Scenario
from bench.scenarios import SCENARIOS
from bench.systems import SYSTEMS, RunningSystem, free_port, running_system
from launch import broker
from launch.broker_config import BrokerConfig
from launch.postgres_local import throwaway_cluster


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in (
        "aiokafka",
        "fastapi",
        "starlette",
        "uvicorn",
        "websockets",
        "broadcaster",
        "orjson",
        "msgspec",
        "pydantic",
    ):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    pom = (broker.POM).read_text()
    versions["kafka"] = pom.split("<kafka.version>")[1].split("<")[0]
    return versions


async def _run_point(
    scenario: Scenario, point: dict[str, Any], system: str, ctx: BenchContext, runs: int, warmup: int
) -> dict[str, Any]:
    if scenario.once:
        runs, warmup = 1, 0
    if scenario.fresh_per_run:
        results = []
        for i in range(runs):
            with running_system(system, ctx.bootstrap, ctx.workdir / f"run-{i}", scenario.settings) as running:
                results.append(await scenario.run(running, point, ctx))
        return {"runs": results, "figures": report.numeric_figures(results)}
    with ExitStack() as stack:
        running = (
            RunningSystem(system, api_url="", ws_url="")
            if scenario.standalone
            else stack.enter_context(running_system(system, ctx.bootstrap, ctx.workdir, scenario.settings))
        )
        for _ in range(0 if scenario.standalone else warmup):  # a standalone run sets up everything anew
            await scenario.run(running, point, ctx)
        results = [await scenario.run(running, point, ctx) for _ in range(runs)]
    return {"runs": results, "figures": report.numeric_figures(results)}


class _LazyPostgres:
    """A throwaway PostgreSQL server, started the first time a scenario asks for it."""

    def __init__(self, stack: ExitStack) -> None:
        self._stack = stack
        self._dsn: str | None = None

    async def __call__(self) -> str:
        if self._dsn is None:
            self._dsn = self._stack.enter_context(throwaway_cluster(free_port()))
        return self._dsn


async def run(
    names: list[str],
    size: str,
    out: Path,
    systems: list[str],
    runs: int,
    warmup: int,
    only: str | None = None,
    bootstrap: str | None = None,
) -> dict[str, Any]:
    """Every point of each scenario named, against each system; on ``bootstrap``'s broker, or on one of its own
    started and stopped here."""
    began = time.monotonic()
    results: dict[str, Any] = {
        "size": size,
        "runs": runs,
        "warmup_runs": warmup,
        "started_at": datetime.now(UTC).isoformat(),
        "machine": {"cpu_model": cpu_model(), "cores": len(__import__("os").sched_getaffinity(0))},
        "versions": _versions(),
        "scenarios": [],
    }
    with tempfile.TemporaryDirectory(prefix="locstream-bench-") as tmp, ExitStack() as services:
        config = BrokerConfig(data_dir=Path(tmp) / "broker", port=broker.free_port_pair(), heap="1g")
        if bootstrap is None:
            await asyncio.to_thread(broker.start, config)
        postgres = _LazyPostgres(services)
        try:
            for name in names:
                scenario, scenario_began = SCENARIOS[name], time.monotonic()
                entry: dict[str, Any] = {
                    "name": name,
                    "what": scenario.what,
                    "notes": scenario.notes,
                    "headline": scenario.headline,
                    "higher_is_better": scenario.higher_is_better,
                    "systems": [s for s in systems if scenario.systems is None or s in scenario.systems],
                    "points": [],
                }
                for point in scenario.points[size]:
                    if only and f"{only.split('=')[0]}={point.get(only.split('=')[0])}" != only:
                        continue
                    label = ", ".join(f"{k}={v}" for k, v in point.items())
                    by_system: dict[str, Any] = {}
                    for system in entry["systems"]:
                        print(f"[bench] {name} {label} {system} ...", file=sys.stderr, flush=True)
                        workdir = Path(tmp) / f"{name}-{len(entry['points'])}-{system}"
                        workdir.mkdir(parents=True)
                        ctx = BenchContext(bootstrap or config.bootstrap, workdir, postgres)
                        try:
                            by_system[system] = await _run_point(scenario, point, system, ctx, runs, warmup)
                        except Exception as exc:  # a failed system is reported, not hidden
                            traceback.print_exc()
                            by_system[system] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
                        figure = by_system[system].get("figures", {}).get(scenario.headline, {})
                        print(f"[bench]   {scenario.headline} = {figure.get('median')}", file=sys.stderr, flush=True)
                    entry["points"].append({"label": label, "params": point, "systems": by_system})
                entry["seconds"] = round(time.monotonic() - scenario_began, 1)
                results["scenarios"].append(entry)
                results["seconds"] = round(time.monotonic() - began, 1)
                report.write(results, out)  # after every scenario: a long run interrupted keeps what it measured
        finally:
            if bootstrap is None:
                await asyncio.to_thread(broker.stop, config)
    results["seconds"] = round(time.monotonic() - began, 1)
    report.write(results, out)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("scenario", help=f"all, or one or more (comma-separated) of {', '.join(SCENARIOS)}")
    parser.add_argument("--size", choices=["small", "full"], default="small")
    parser.add_argument("--out", default="bench-results", help="where results.json and results.md go")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated, of {', '.join(SYSTEMS)}")
    parser.add_argument("--runs", type=int, default=None, help="measured runs per point (default: full 3, small 1)")
    parser.add_argument("--only", default=None, metavar="KEY=VALUE", help="run only the points with this parameter")
    parser.add_argument(
        "--bootstrap",
        default=None,
        metavar="HOST:PORT",
        help="a running broker to use (each system gets topics of its own there); default: start one for the run",
    )
    args = parser.parse_args(argv)
    names = list(SCENARIOS) if args.scenario == "all" else args.scenario.split(",")
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    runs = args.runs or (3 if args.size == "full" else 1)
    warmup = 1 if args.size == "full" else 0
    systems = [s for s in args.systems.split(",") if s]
    results = asyncio.run(run(names, args.size, Path(args.out), systems, runs, warmup, args.only, args.bootstrap))
    print(report.markdown(results))
    failed = [
        (s["name"], p["label"], name)
        for s in results["scenarios"]
        for p in s["points"]
        for name, r in p["systems"].items()
        if "error" in r
    ]
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
        return 1
    return 0
