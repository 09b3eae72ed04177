"""The systems under test, each started as real processes on loopback against the harness's broker.

- ``locstream``: producers, projector and ws_edge, three processes (as in production);
- ``seed``: the seed document's design (``bench/peers/seed.py``), one process;
- ``broadcaster``: encode/broadcaster with its Kafka backend (``bench/peers/broadcaster_peer.py``), one process.

Every system serves the seed's URLs, so the same load generators drive all of them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from launch.prefork import ADDRESS_ENV, ForkedProcess, ServiceLauncher
from locstream.auth import issue_token
from locstream.settings import AuthSettings
from schemas.claims import Role

JWT_SECRET = "bench-secret-for-locstream-benchmarks-0123456789"
SYSTEMS = ("locstream", "seed", "broadcaster")
TENANT = "bench-tenant"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def token(role: Role, tenant: str = TENANT, sub: str = "bench") -> str:
    return issue_token(AuthSettings(jwt_secret=JWT_SECRET), tenant_id=tenant, sub=sub, role=role, ttl_seconds=86_400)


# A service's process: a new interpreter, or a child of the tests' fork server (``spawn_module``).
Child = subprocess.Popen[bytes] | ForkedProcess


def spawn_module(module: str, args: list[str], env: dict[str, str], log: Path) -> Child:
    """``python -m module *args`` with ``env`` its whole environment and its output in ``log``: forked from the
    fork server at ``$LOCSTREAM_PREFORK_SOCKET`` when the tests hand the bench theirs (``launch/prefork.py``: the
    service's imports are done once per test process, not once per start), else a new interpreter."""
    address = os.environ.get(ADDRESS_ENV)
    if address:
        return ServiceLauncher.connect(address).spawn(args, env=env, log_path=log, module=module)
    with log.open("wb") as out:
        command = [sys.executable, "-m", module, *args]
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


@dataclass
class Process:
    role: str
    port: int
    popen: Child
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid


@dataclass
class RunningSystem:
    name: str
    api_url: str  # where fixes are POSTed
    ws_url: str  # the WebSocket endpoint
    processes: dict[str, Process] = field(default_factory=dict)
    fanout_role: str = ""  # the process that writes to the sockets
    api_role: str = ""  # the process that answers the POSTs
    kafka_topic: str | None = None  # where the fixes pass through Kafka, if they do

    def pids(self) -> dict[str, int]:
        return {role: process.pid for role, process in self.processes.items()}


WS_PATH = "/api/v1/field-service/ws/technician-locations"


async def answered_ok(client: httpx.AsyncClient, url: str, deadline: float, every: float) -> bool:
    """Poll ``url`` every ``every`` seconds until it answers 200 (True) or the monotonic ``deadline`` passes."""
    while time.monotonic() < deadline:
        try:
            if (await client.get(url)).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        await asyncio.sleep(every)
    return False


@asynccontextmanager
async def service(
    command: list[str],
    env: dict[str, str],
    log: Path,
    ready_url: str,
    *,
    timeout: float = 300.0,
    every: float = 0.05,
) -> AsyncIterator[Child]:
    """``locstream <command>`` as a process of its own (``env`` its whole environment, its output to ``log``),
    yielded once ``ready_url`` answers 200 (polled every ``every`` s); RuntimeError with the log's tail when it
    exits first or is not ready within ``timeout`` s. Terminated and awaited on leaving, whatever happened."""
    process = spawn_module("launch.cli", command, env, log)
    try:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=5.0) as http:
            while not await answered_ok(http, ready_url, min(deadline, time.monotonic() + 1.0), every):
                if process.poll() is not None or time.monotonic() >= deadline:
                    tail = (await asyncio.to_thread(lambda: log.read_text(errors="replace")))[-3000:]
                    raise RuntimeError(f"locstream {command[0]} did not get ready (see {log}):\n{tail}")
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
        await asyncio.to_thread(process.wait)


def _start(role: str, module: str, args: list[str], env: dict[str, str], port: int, workdir: Path) -> Process:
    log = workdir / f"{role}.log"
    popen = spawn_module(module, args, {**os.environ, **env}, log)
    process = Process(role, port, popen, log)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"{role} exited with {popen.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2.0)
            if response.status_code == 200 and response.json().get("ready", True) is True:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    popen.kill()
    raise RuntimeError(f"{role} did not become ready; see {log}")


def _stop(processes: dict[str, Process]) -> None:
    for process in processes.values():
        if process.popen.poll() is None:
            process.popen.send_signal(signal.SIGTERM)
    for process in processes.values():
        try:
            process.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.popen.kill()
            process.popen.wait()


@contextmanager
def running_system(
    name: str, bootstrap: str, workdir: Path, settings: dict[str, str] | None = None
) -> Iterator[RunningSystem]:
    """Start system ``name`` fresh (its own topic, database and ports) and stop it afterwards; ``settings``: more
    environment for locstream's services."""
    workdir.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:8]
    env = {"LOCSTREAM_JWT_SECRET": JWT_SECRET, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    processes: dict[str, Process] = {}
    try:
        if name == "locstream":
            env |= {
                "KAFKA_TOPIC": f"bench.locations.{run_id}",
                # a group of its own: a projector that joined another run's (or production's) group on a shared
                # broker would be held in its rebalances
                "LOCSTREAM_PROJECTOR_GROUP_ID": f"bench.projector.{run_id}",
                "LOCSTREAM_DATA_DIR": str(workdir / "data"),
                # one load generator, one token: measure the API, not its rate limits
                "LOCSTREAM_PRODUCERS_TOKEN_RATE": "0",
                "LOCSTREAM_PRODUCERS_TENANT_RATE": "0",
                **(settings or {}),
            }
            for role in ("producers", "projector", "ws-edge"):
                port = free_port()
                processes[role] = _start(role, "launch.cli", [role, "--port", str(port)], env, port, workdir)
            system = RunningSystem(
                name,
                api_url=f"http://127.0.0.1:{processes['producers'].port}",
                ws_url=f"ws://127.0.0.1:{processes['ws-edge'].port}{WS_PATH}",
                processes=processes,
                fanout_role="ws-edge",
                api_role="producers",
                kafka_topic=env["KAFKA_TOPIC"],
            )
        elif name in ("seed", "broadcaster"):
            # A peer is one process serving the API, the WebSocket and the fan-out.
            port = free_port()
            peer_args = (
                ["bench.peers.seed", "--db", str(workdir / "seed.sqlite3")]
                if name == "seed"
                else [
                    "bench.peers.broadcaster_peer",
                    "--kafka",
                    bootstrap,
                    "--db",
                    str(workdir / "broadcaster.sqlite3"),
                    "--channel-prefix",
                    f"bench.broadcaster.{run_id}.",
                    "--tenants",
                    TENANT,
                ]
            )
            args = ["--host", "127.0.0.1", "--port", str(port), *peer_args[1:]]
            processes[name] = _start(name, peer_args[0], args, env, port, workdir)
            system = RunningSystem(
                name,
                api_url=f"http://127.0.0.1:{port}",
                ws_url=f"ws://127.0.0.1:{port}{WS_PATH}",
                processes=processes,
                fanout_role=name,
                api_role=name,
                kafka_topic=f"bench.broadcaster.{run_id}.{TENANT}" if name == "broadcaster" else None,
            )
        else:
            raise ValueError(f"unknown system {name!r}; known: {', '.join(SYSTEMS)}")
        yield system
    finally:
        _stop(processes)
