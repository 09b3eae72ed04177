"""How the fault suite hurts brokers: ``LocalCluster`` (the project's own three nodes, by their process ids) or
``CommandFaults`` (an external cluster, through the operator's command: ``LOCSTREAM_FAULT_COMMAND ACTION NODE_ID``
with ACTION one of kill, start, stop, pause, resume)."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
from dataclasses import dataclass
from typing import Protocol

from launch import broker
from launch.broker_config import ClusterConfig
from locstream.kafka_cluster import ClusterView, describe_at


class FaultDriver(Protocol):
    @property
    def bootstrap(self) -> str: ...

    @property
    def nodes(self) -> tuple[int, ...]:
        """The node ids, as the cluster's metadata names them."""

    async def kill(self, node: int) -> None:
        """SIGKILL: no controlled shutdown, nothing flushed."""

    async def stop(self, node: int) -> None:
        """A controlled shutdown (SIGTERM), as a rolling restart does."""

    async def start(self, node: int) -> None:
        """Start the node again and return once it answers."""

    async def pause(self, node: int) -> None:
        """SIGSTOP: the process stands still, its sockets stay open (a long GC pause, a frozen VM)."""

    async def resume(self, node: int) -> None:
        """SIGCONT."""


@dataclass
class LocalCluster:
    cluster: ClusterConfig

    @property
    def bootstrap(self) -> str:
        return self.cluster.bootstrap

    @property
    def nodes(self) -> tuple[int, ...]:
        return tuple(range(1, self.cluster.nodes + 1))

    def _pid(self, node: int) -> int:
        pid = broker.pid_of(self.cluster.node(node))
        assert pid is not None, f"node {node} is not running"
        return pid

    async def kill(self, node: int) -> None:
        os.killpg(self._pid(node), signal.SIGKILL)
        await asyncio.to_thread(broker.stop, self.cluster.node(node))  # reaps it, removes the pid file

    async def stop(self, node: int) -> None:
        await asyncio.to_thread(broker.stop, self.cluster.node(node))

    async def start(self, node: int) -> None:
        await asyncio.to_thread(broker.start, self.cluster.node(node))

    async def pause(self, node: int) -> None:
        os.killpg(self._pid(node), signal.SIGSTOP)

    async def resume(self, node: int) -> None:
        os.killpg(self._pid(node), signal.SIGCONT)


@dataclass
class CommandFaults:
    """An external cluster: ``command`` does the harm, the node ids are those its metadata lists."""

    bootstrap: str
    command: str
    nodes: tuple[int, ...] = ()

    async def _run(self, action: str, node: int) -> None:
        process = await asyncio.create_subprocess_exec(*shlex.split(self.command), action, str(node))
        code = await asyncio.wait_for(process.wait(), 300)
        assert code == 0, f"{self.command} {action} {node} exited with {code}"

    async def kill(self, node: int) -> None:
        await self._run("kill", node)

    async def stop(self, node: int) -> None:
        await self._run("stop", node)

    async def start(self, node: int) -> None:
        await self._run("start", node)

    async def pause(self, node: int) -> None:
        await self._run("pause", node)

    async def resume(self, node: int) -> None:
        await self._run("resume", node)


async def view_or_none(bootstrap: str, topics: list[str] | None = None) -> ClusterView | None:
    """The cluster now (``describe_at``), or None when no node answered this time: for probes that poll."""
    try:
        return await describe_at(bootstrap, topics)
    except Exception:  # no node answered this time
        return None
