"""Driving the load generators, each in a process of its own, from the harness."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from bench.procstats import cpu_seconds


class WsClients:
    """A ``bench.wsclient`` process holding ``connections`` WebSockets open."""

    def __init__(
        self,
        url: str,
        token: str,
        connections: int,
        *,
        slow: int = 0,
        sample_every: int = 20,
        sources: int = 1,
        concurrency: int = 1000,
    ) -> None:
        self.args = [
            "--url",
            url,
            "--token",
            token,
            "--connections",
            str(connections),
            "--slow",
            str(slow),
            "--sample-every",
            str(sample_every),
            "--concurrency",
            str(concurrency),
            "--sources",
            ",".join(f"127.0.0.{i + 1}" for i in range(sources)),
        ]
        self.process: asyncio.subprocess.Process | None = None
        self.ready: dict[str, Any] = {}

    async def __aenter__(self) -> WsClients:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> dict[str, Any]:
        """Connect everything; returns the ``ready`` line (connected, failed, seconds)."""
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.wsclient",
            *self.args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        self.ready = await self._line("ready")
        return self.ready

    async def report(self, keep_samples: bool = False) -> dict[str, Any]:
        """Counters, and the latency of the samples since the last report; ``keep_samples``: counters only, the
        samples kept for the next report."""
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(b"count\n" if keep_samples else b"report\n")
        await self.process.stdin.drain()
        return await self._line("report")

    async def stop(self) -> None:
        if self.process is None:
            return
        if self.process.returncode is None and self.process.stdin is not None:
            self.process.stdin.write(b"stop\n")
            await self.process.stdin.drain()
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self.process = None

    def cpu_seconds(self) -> float:
        assert self.process is not None
        return cpu_seconds(self.process.pid)

    async def _line(self, event: str) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        while True:
            raw = await asyncio.wait_for(self.process.stdout.readline(), 600)
            if not raw:
                raise RuntimeError(f"wsclient exited before '{event}'")
            message: dict[str, Any] = json.loads(raw)
            if message.get("event") == event:
                return message


async def http_load(
    url: str,
    token: str,
    *,
    duration: float,
    rate: float = 0.0,
    concurrency: int = 16,
    technicians: int = 500,
    batch: int = 0,
    protocol: str = "native",
    device_key: str = "",
) -> dict[str, Any]:
    """Run ``bench.httpload`` to completion; open loop when ``rate`` is given, closed loop otherwise."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.httpload",
        "--url",
        url,
        "--token",
        token,
        "--duration",
        str(duration),
        "--rate",
        str(rate),
        "--concurrency",
        str(concurrency),
        "--technicians",
        str(technicians),
        "--batch",
        str(batch),
        "--protocol",
        protocol,
        f"--device-key={device_key}",  # one argument: a key may begin with "-" (token_urlsafe)
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"httpload failed with {process.returncode}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result
