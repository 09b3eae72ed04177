"""Services under test as real processes (``python -m launch.cli <service>``, forked by ``launch/prefork.py``
from a process that has imported them once), killable with SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import jwt

from launch.prefork import ForkedProcess, shared_launcher
from locstream.auth import issue_token
from locstream.settings import AuthSettings, DataSettings, KafkaSettings
from projector.backends import make_store
from projector.store import Snapshot
from schemas.claims import Role
from tests.support.jwks_provider import JwksProvider

T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T | None]], *, timeout: float, what: str) -> T:
    """Poll ``probe`` until it returns something other than None/False; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class Service:
    name: str
    port: int
    process: ForkedProcess
    log_path: Path

    # An admin's bearer header for /metrics and the node-wide /ws/stats (set by ``Stack.start``).
    admin_headers: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_bytes(self) -> int:
        """The process's resident memory now."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS line")


@dataclass
class Stack:
    env: dict[str, str]
    kafka: KafkaSettings
    data_dir: Path
    log_dir: Path
    port: Callable[[], int]
    services: list[Service] = field(default_factory=list)
    # With a provider, the services take its tokens (JWKS mode) and ``token``/``sign`` make them; else HS256.
    provider: JwksProvider | None = None

    @property
    def auth(self) -> AuthSettings:
        return AuthSettings(
            jwt_secret=self.env["LOCSTREAM_JWT_SECRET"],
            jwt_issuer=self.env.get("LOCSTREAM_JWT_ISSUER"),
            jwt_audience=self.env.get("LOCSTREAM_JWT_AUDIENCE"),
        )

    def token(self, tenant: str, role: Role = Role.DISPATCHER, sub: str = "someone", ttl: int = 600) -> str:
        if self.provider is not None:
            return self.provider.token(tenant, role, sub, ttl)
        return issue_token(self.auth, tenant_id=tenant, sub=sub, role=role, ttl_seconds=ttl)

    def admin_headers(self, tenant: str = "operations") -> dict[str, str]:
        """An admin's bearer header: what ``/metrics`` and the node-wide ``/ws/stats`` ask for."""
        return {"Authorization": f"Bearer {self.token(tenant, Role.ADMIN, sub='operator')}"}

    async def replay_cli(self, *args: str, token: str | None) -> tuple[int, str, str]:
        """``locstream replay ARGS`` as a process with the services' settings: its exit code, stdout and stderr."""
        env = {**os.environ, **self.env, **({"LOCSTREAM_TOKEN": token} if token else {})}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "launch.cli",
            "replay",
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    def sign(self, claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
        """``claims`` signed as the services expect: the provider's key (JWKS mode), else the HS256 secret."""
        if self.provider is not None:
            return self.provider.sign(claims, headers)
        return jwt.encode(claims, self.env["LOCSTREAM_JWT_SECRET"], algorithm="HS256", headers=headers)

    async def start(
        self,
        name: str,
        *args: str,
        timeout: float = 60.0,
        unset: tuple[str, ...] = (),
        port: int | None = None,
        env: dict[str, str] | None = None,
        max_open_files: int | None = None,
    ) -> Service:
        """Start ``producers``, ``projector``, ``ws-edge`` or ``dev`` and wait until /healthz says it is ready.

        ``args`` go to the command; ``unset`` names environment variables the process must not see; ``env`` adds
        some for this process only; ``port``: this one (a restart on the same port), else a free one;
        ``max_open_files``: the process's descriptor limit (RLIMIT_NOFILE), to exhaust it in seconds.
        """
        port = port or self.port()
        log_path = self.log_dir / f"{name}-{len(self.services)}.log"
        env = {key: value for key, value in {**os.environ, **self.env, **(env or {})}.items() if key not in unset}
        process = shared_launcher().spawn(
            [name, "--port", str(port), *args], env=env, log_path=log_path, max_open_files=max_open_files
        )
        can_sign = self.provider is not None or "LOCSTREAM_JWT_SECRET" in self.env  # not with Keycloak's tokens
        service = Service(name, port, process, log_path, self.admin_headers() if can_sign else {})
        self.services.append(service)

        async def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode}:\n{service.log()}")
            try:
                async with httpx.AsyncClient(timeout=2.0) as client:
                    response = await client.get(f"{service.url}/healthz")
            except httpx.HTTPError:
                return False
            return response.status_code == 200 and response.json().get("ready", True) is True

        await eventually(ready, timeout=timeout, what=f"{name} to become ready")
        return service

    async def snapshot(self) -> Snapshot:
        """The projection as the services' settings point to it (SQLite in the data dir, or the DSN)."""
        store = make_store(
            DataSettings(data_dir=self.data_dir, database_url=self.env.get("LOCSTREAM_DATABASE_URL")), self.kafka.topic
        )
        await store.open()
        try:
            return await store.snapshot()
        finally:
            await store.close()

    async def close(self) -> None:
        for service in self.services:
            if service.process.poll() is None:
                service.process.send_signal(signal.SIGTERM)
        for service in self.services:
            try:
                service.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait()
