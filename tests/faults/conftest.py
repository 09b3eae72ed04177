"""The fault suite's cluster and services, started once for every case of the module.

Unless ``LOCSTREAM_FAULT_COMMAND`` is set, the suite runs its own three-node cluster (``launch.broker``,
``ClusterConfig``), whatever ``KAFKA_BOOTSTRAP_SERVERS`` says: the other tests' single broker cannot lose a node.
With ``LOCSTREAM_FAULT_COMMAND``, it runs against the cluster at ``KAFKA_BOOTSTRAP_SERVERS`` and hurts its brokers
through that command (``tests/faults/drivers.py``).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from launch import broker
from launch.broker_config import ClusterConfig
from launch.postgres_local import fresh_database
from locstream.kafka_cluster import describe_at
from locstream.settings import KafkaSettings
from schemas.claims import Role
from tests.conftest import TEST_JWT_SECRET
from tests.faults.drivers import CommandFaults, FaultDriver, LocalCluster
from tests.support.ports import free_port
from tests.support.stack import Service, Stack

TENANTS = ["acme-fiber", "globex-isp", "initech-gas", "umbrella-grid"]
TECHNICIANS = [(tenant, f"tech-{i}") for tenant in TENANTS for i in range(4)]


@pytest.fixture(scope="module")
def fault_cluster() -> Iterator[FaultDriver]:
    command = os.environ.get("LOCSTREAM_FAULT_COMMAND")
    if command:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            pytest.fail("LOCSTREAM_FAULT_COMMAND needs KAFKA_BOOTSTRAP_SERVERS: the cluster it acts on")
        yield CommandFaults(bootstrap, command)
        return
    with tempfile.TemporaryDirectory(prefix="locstream-faults-") as data_dir:
        cluster = ClusterConfig(Path(data_dir), port=broker.free_port_run(ClusterConfig.ports_needed(3)), nodes=3)
        try:
            broker.start_cluster(cluster)
        except broker.BrokerError as exc:
            tails = [
                f"--- node {node.node_id}\n" + "\n".join(node.log_file.read_text(errors="replace").splitlines()[-30:])
                for node in cluster.members
                if node.log_file.exists()
            ]
            pytest.fail(f"could not start the three-node cluster: {exc}\n" + "\n".join(tails))
        try:
            yield LocalCluster(cluster)
        finally:
            broker.stop_cluster(cluster)


@dataclass
class Rig:
    cluster: FaultDriver
    stack: Stack
    dsn: str
    api: list[Service]
    projectors: list[Service]
    edges: list[Service]
    writers: dict[str, str]  # tenant -> a device gateway's token
    viewers: dict[str, str]  # tenant -> a dispatcher's token
    scratch: Path

    @property
    def services(self) -> list[Service]:
        return [*self.api, *self.projectors, *self.edges]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig(
    fault_cluster: FaultDriver, postgres_server: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Rig]:
    """Two ingest processes, two projectors on PostgreSQL and two edges on a topic of their own."""
    if isinstance(fault_cluster, CommandFaults):
        fault_cluster.nodes = (await describe_at(fault_cluster.bootstrap)).brokers
    scratch = tmp_path_factory.mktemp("faults")
    topic = f"locations.faults.{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings(bootstrap_servers=fault_cluster.bootstrap, topic=topic)
    async with fresh_database(postgres_server) as dsn:
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "KAFKA_TOPIC": topic,
            "KAFKA_DEVICES_TOPIC": f"{topic}.devices",
            "KAFKA_GEOFENCES_TOPIC": f"{topic}.geofences",
            "LOCSTREAM_DATA_DIR": str(scratch / "data"),
            "LOCSTREAM_DATABASE_URL": dsn,
            "LOCSTREAM_JWT_SECRET": TEST_JWT_SECRET,
        }
        stack = Stack(env=env, kafka=kafka, data_dir=scratch / "data", log_dir=scratch, port=free_port)
        try:
            projectors = [await stack.start("projector"), await stack.start("projector")]
            api = [await stack.start("producers"), await stack.start("producers")]
            edges = [await stack.start("ws-edge"), await stack.start("ws-edge")]
            writers = {t: stack.token(t, Role.DEVICE_GATEWAY, ttl=3600) for t in TENANTS}
            viewers = {t: stack.token(t, ttl=3600) for t in TENANTS}
            yield Rig(fault_cluster, stack, dsn, api, projectors, edges, writers, viewers, scratch)
        finally:
            await stack.close()
