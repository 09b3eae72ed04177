"""Real Apache Kafka brokers (KRaft, broker and controller in one JVM each) from Maven Central jars: one node, or
a cluster of several on one machine (``ClusterConfig``), each node a voter of the controller quorum.

``broker/pom.xml`` pins the Kafka version; ``mvn dependency:copy-dependencies`` puts its runtime jars in
``broker/target/lib``. Brokers bind to 127.0.0.1 only. A node's data, log and pid file live in its data dir. A node
may open a TLS listener (certificates from ``launch.certificates``, client certificates required with ``mtls``)
and a SASL listener (SCRAM), over TLS when it has one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from launch.certificates import TlsFiles
from locstream.kafka_cluster import describe_at

PROJECT_ROOT = Path(__file__).resolve().parents[1]
POM = PROJECT_ROOT / "broker" / "pom.xml"
LIB_DIR = PROJECT_ROOT / "broker" / "target" / "lib"


class BrokerError(RuntimeError):
    """The broker could not be resolved, formatted, started or stopped."""


def free_port_pair(rng: random.Random | None = None) -> int:
    """A port that is free together with the next one (the broker's and its controller's)."""
    return free_port_run(2, rng)


def free_port_run(count: int, rng: random.Random | None = None) -> int:
    """The first of ``count`` consecutive free ports (a cluster's brokers, controllers and secure listeners).

    Chosen below Linux's ephemeral range (32768 and up), so no client socket opened meanwhile can take one.
    """
    rng = rng or random.Random()
    for _ in range(200):
        port = rng.randrange(20_000, 32_000 - count)
        sockets = [socket.socket() for _ in range(count)]
        try:
            for offset, sock in enumerate(sockets):
                sock.bind(("127.0.0.1", port + offset))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return port
    raise BrokerError(f"no {count} consecutive free ports between 20000 and 32000")


@dataclass(frozen=True)
class BrokerConfig:
    data_dir: Path
    port: int = 9092
    heap: str = "512m"
    # A user and password: a SASL listener (SCRAM-SHA-256 and -512) on ``scram_port`` beside the plaintext one,
    # with that user's credentials written when the storage is formatted.
    scram: tuple[str, str] | None = None
    scram_port: int = 0
    # Certificates: a TLS listener on ``tls_port``; with ``mtls`` it asks every client for a certificate the CA
    # signed. With ``scram`` too, the SASL listener runs over TLS (SASL_SSL).
    tls: TlsFiles | None = None
    tls_port: int = 0
    mtls: bool = False
    # In a cluster: this node's id, every voter ("1@127.0.0.1:9093,2@..."; empty: this node alone) and how many
    # nodes there are (the internal topics' replication follows it).
    node_id: int = 1
    voters: str = ""
    cluster_size: int = 1

    @property
    def scram_bootstrap(self) -> str:
        return f"127.0.0.1:{self.scram_port}"

    @property
    def tls_bootstrap(self) -> str:
        return f"127.0.0.1:{self.tls_port}"

    @property
    def scram_protocol(self) -> str:
        return "SASL_SSL" if self.tls is not None else "SASL_PLAINTEXT"

    @property
    def controller_port(self) -> int:
        return self.port + 1

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def properties_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_dirs(self) -> Path:
        return self.data_dir / "kraft"


def durability_properties(cluster_size: int) -> dict[str, str]:
    """How a cluster keeps what it acknowledged; compose.yaml passes the same to its three nodes (tested).

    On a cluster of three or more, everything is kept on three replicas and written to two at least: the
    internal topics, and topics created without saying (``default.replication.factor``, ``min.insync.replicas``).
    """
    replicas, min_isr = str(min(3, cluster_size)), str(min(2, cluster_size))
    return {
        "process.roles": "broker,controller",
        "controller.listener.names": "CONTROLLER",
        "default.replication.factor": replicas,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": replicas,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": min_isr,
        "auto.create.topics.enable": "false",
    }


def server_properties(config: BrokerConfig) -> str:
    """A node as broker and controller, static quorum, tuned for a single machine (``durability_properties``)."""
    props = {
        **durability_properties(config.cluster_size),
        "node.id": str(config.node_id),
        "controller.quorum.voters": config.voters or f"{config.node_id}@127.0.0.1:{config.controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{config.port},CONTROLLER://127.0.0.1:{config.controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{config.port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(config.log_dirs),
        "num.partitions": "6",
        "offsets.topic.num.partitions": "1",  # the default 50 slows the first group join
        "group.initial.rebalance.delay.ms": "0",
    }
    if config.tls is not None:
        props["listeners"] += f",SSL://127.0.0.1:{config.tls_port}"
        props["advertised.listeners"] += f",SSL://127.0.0.1:{config.tls_port}"
        props["listener.security.protocol.map"] += ",SSL:SSL"
        props["ssl.keystore.type"] = "PEM"
        props["ssl.keystore.location"] = str(config.tls.broker)
        props["ssl.truststore.type"] = "PEM"
        props["ssl.truststore.location"] = str(config.tls.ca)
        if config.mtls:
            props["listener.name.ssl.ssl.client.auth"] = "required"
    if config.scram is not None:
        name = config.scram_protocol
        props["listeners"] += f",{name}://127.0.0.1:{config.scram_port}"
        props["advertised.listeners"] += f",{name}://127.0.0.1:{config.scram_port}"
        props["listener.security.protocol.map"] += f",{name}:{name}"
        props["sasl.enabled.mechanisms"] = "SCRAM-SHA-256,SCRAM-SHA-512"
        for mechanism in ("scram-sha-256", "scram-sha-512"):
            props[f"listener.name.{name.lower()}.{mechanism}.sasl.jaas.config"] = (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            )
    return "".join(f"{key}={value}\n" for key, value in props.items())


@dataclass(frozen=True)
class ClusterConfig:
    """``nodes`` brokers on 127.0.0.1, all controllers and voters, in ``data_dir/node-N``.

    Ports from ``port`` on: node N's broker at ``port + 2(N-1)`` and its controller next to it; then, when asked
    for, the TLS listeners (one per node) and the SCRAM listeners. ``free_port_run(ClusterConfig.ports_needed())``
    finds such a run.
    """

    data_dir: Path
    port: int = 9092
    nodes: int = 3
    heap: str = "512m"
    tls: bool = False
    mtls: bool = False
    scram: tuple[str, str] | None = None

    @staticmethod
    def ports_needed(nodes: int) -> int:
        return 4 * nodes

    @property
    def tls_files(self) -> TlsFiles | None:
        return TlsFiles(self.data_dir / "tls") if self.tls else None

    def node(self, node_id: int) -> BrokerConfig:
        n = self.nodes
        voters = ",".join(f"{i}@127.0.0.1:{self.port + 2 * (i - 1) + 1}" for i in range(1, n + 1))
        return BrokerConfig(
            data_dir=self.data_dir / f"node-{node_id}",
            port=self.port + 2 * (node_id - 1),
            heap=self.heap,
            scram=self.scram,
            scram_port=self.port + 3 * n + node_id - 1,
            tls=self.tls_files,
            tls_port=self.port + 2 * n + node_id - 1,
            mtls=self.mtls,
            node_id=node_id,
            voters=voters,
            cluster_size=n,
        )

    @property
    def members(self) -> list[BrokerConfig]:
        return [self.node(i) for i in range(1, self.nodes + 1)]

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.members)

    @property
    def tls_bootstrap(self) -> str:
        return ",".join(node.tls_bootstrap for node in self.members)

    @property
    def scram_bootstrap(self) -> str:
        return ",".join(node.scram_bootstrap for node in self.members)

    @property
    def description_file(self) -> Path:
        return self.data_dir / "cluster.json"

    def save(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        description = {"port": self.port, "nodes": self.nodes, "heap": self.heap, "tls": self.tls, "mtls": self.mtls}
        self.description_file.write_text(json.dumps(description))

    @classmethod
    def load(cls, data_dir: Path) -> ClusterConfig | None:
        """The cluster started in ``data_dir`` (its ``cluster.json``), or None when none was."""
        try:
            description = json.loads((data_dir / "cluster.json").read_text())
        except FileNotFoundError:
            return None
        return cls(data_dir=data_dir, **description)


def resolve_jars() -> Path:
    """Fetch the broker's runtime jars with Maven once; later calls reuse ``broker/target/lib``."""
    override = os.environ.get("LOCSTREAM_BROKER_LIB")
    if override:
        return Path(override)
    if LIB_DIR.is_dir() and any(LIB_DIR.glob("kafka_2.13-*.jar")):
        return LIB_DIR
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise BrokerError("Java 17+ and Maven are needed to run the local broker (mvn and java on PATH)")
    result = subprocess.run(
        ["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BrokerError(f"mvn could not resolve the Kafka jars:\n{result.stdout}\n{result.stderr}")
    return LIB_DIR


def _read_pid(config: BrokerConfig) -> int | None:
    try:
        pid = int(config.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


async def _answers(bootstrap: str, seconds: float) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(seconds * 1000))
    try:
        async with asyncio.timeout(seconds):
            await admin.start()
            await admin.list_topics()
        return True
    except Exception:
        return False
    finally:
        await admin.close()


def answers(bootstrap: str, timeout: float = 3.0) -> bool:
    """True when an admin call (list topics) succeeds against ``bootstrap``."""
    client_log = logging.getLogger("aiokafka")
    level = client_log.level
    client_log.setLevel(logging.CRITICAL)  # "connection refused" while polling a starting broker is expected
    try:
        return asyncio.run(_answers(bootstrap, timeout))
    finally:
        client_log.setLevel(level)


def format_storage(config: BrokerConfig, classpath: str, cluster_id: str | None = None) -> None:
    """Format the KRaft log dirs once; a random cluster id unless given (a base64url id may begin with "-")."""
    if (config.log_dirs / "meta.properties").exists():
        return
    cluster_id = cluster_id or base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    result = subprocess.run(
        [
            "java",
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={cluster_id}",  # one word, so an id beginning with "-" is not taken for an option
            "-c",
            str(config.properties_file),
            *_scram_credentials(config),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BrokerError(f"formatting KRaft storage failed:\n{result.stdout}\n{result.stderr}")


def _scram_credentials(config: BrokerConfig) -> list[str]:
    if config.scram is None:
        return []
    user, password = config.scram
    return [
        arg
        for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512")
        for arg in ("--add-scram", f"{mechanism}=[name={user},password={password}]")
    ]


def start(config: BrokerConfig, *, timeout: float = 90.0) -> bool:
    """Start the broker unless it already answers; returns False when it was already running. A node of a
    cluster answers only once a majority of the voters runs."""
    if _read_pid(config) is not None and answers(config.bootstrap):
        return False
    classpath = f"{resolve_jars()}/*"
    _prepare(config, classpath)
    pid = _spawn(config, classpath)
    _await_answer(config, pid, timeout)
    return True


def _prepare(config: BrokerConfig, classpath: str, cluster_id: str | None = None) -> None:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    config.properties_file.write_text(server_properties(config))
    format_storage(config, classpath, cluster_id)


def _spawn(config: BrokerConfig, classpath: str) -> int:
    # posix_spawn rather than Popen: the broker outlives this process (a new session, stopped by stop()).
    pid = os.posix_spawnp(
        "java",
        [
            "java",
            f"-Xms{config.heap}",
            f"-Xmx{config.heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(config.properties_file),
        ],
        dict(os.environ),
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(config.log_file), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
        setsid=True,
    )
    config.pid_file.write_text(str(pid))
    return pid


def _await_answer(config: BrokerConfig, pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            config.pid_file.unlink(missing_ok=True)
            raise BrokerError(f"the broker exited during start-up; see {config.log_file}")
        if answers(config.bootstrap, timeout=2.0):
            return
        time.sleep(0.5)
    stop(config)
    raise BrokerError(f"broker did not answer within {timeout:.0f}s; see {config.log_file}")


def start_cluster(cluster: ClusterConfig, *, timeout: float = 120.0) -> bool:
    """Start every node of ``cluster`` that is not running (all formatted with one cluster id, certificates made
    when it has TLS) and wait until each answers; False when all were running already."""
    from launch import certificates

    if cluster.tls_files is not None:
        certificates.generate(cluster.tls_files.directory)
    cluster.save()
    classpath = f"{resolve_jars()}/*"
    cluster_id = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    for node in cluster.members:  # a node formatted before keeps the id in its meta.properties
        existing = node.log_dirs / "meta.properties"
        if existing.exists():
            for line in existing.read_text().splitlines():
                if line.startswith("cluster.id="):
                    cluster_id = line.split("=", 1)[1]
    spawned: list[tuple[BrokerConfig, int]] = []
    for node in cluster.members:
        if _read_pid(node) is not None:
            continue
        _prepare(node, classpath, cluster_id)
        spawned.append((node, _spawn(node, classpath)))
    try:
        for node, pid in spawned:  # a majority of voters must run before any node answers: all are spawned first
            _await_answer(node, pid, timeout)
    except BrokerError:
        stop_cluster(cluster)
        raise
    return bool(spawned)


def stop_cluster(cluster: ClusterConfig, *, timeout: float = 30.0) -> bool:
    """Stop every node (all at once: a controller quorum that loses its majority first would hold the rest up)."""
    pids = [(node, _read_pid(node)) for node in cluster.members]
    for _, pid in pids:
        if pid is not None:
            os.killpg(pid, signal.SIGTERM)
    for node, pid in pids:
        if pid is not None:
            stop(node, timeout=timeout)
        node.pid_file.unlink(missing_ok=True)
    return any(pid is not None for _, pid in pids)


def pid_of(config: BrokerConfig) -> int | None:
    """The node's process id while it runs (for fault injection: SIGKILL, SIGSTOP)."""
    return _read_pid(config)


def cluster_status(cluster: ClusterConfig) -> tuple[bool, list[str]]:
    """Whether every node runs and answers, and a line per node (role, partitions led) then the partitions with
    fewer in-sync replicas than replicas."""
    running = [node for node in cluster.members if _read_pid(node) is not None]
    lines: list[str] = []
    view = None
    if running:
        try:
            view = asyncio.run(describe_at(",".join(node.bootstrap for node in running), seconds=10.0))
        except Exception as exc:  # no node answers: say which run
            lines.append(f"the cluster does not answer: {exc!r}")
    for node in cluster.members:
        state = "running" if node in running else "down"
        if view is None or node.node_id not in view.brokers:
            role = "not in the cluster's metadata" if node in running else ""
        else:
            quorum = view.quorum
            role = "active controller" if quorum and quorum.leader_id == node.node_id else "voter"
            led = sum(p.leader == node.node_id for p in view.partitions)
            role += f", broker leading {led} partitions"
        lines.append(f"node {node.node_id} on {node.bootstrap}: {state}" + (f", {role}" if role else ""))
    if view is not None:
        lagging = view.under_replicated
        offline = view.offline
        lines.append(
            "under-replicated partitions: "
            + (
                ", ".join(f"{p.topic}-{p.partition} (in sync {list(p.isr)} of {list(p.replicas)})" for p in lagging)
                or "none"
            )
        )
        if offline:
            lines.append("offline partitions: " + ", ".join(f"{p.topic}-{p.partition}" for p in offline))
    if view is None:
        return False, lines
    return len(running) == cluster.nodes == len(view.brokers) and not view.under_replicated, lines


def stop(config: BrokerConfig, *, timeout: float = 30.0) -> bool:
    """Stop the broker (SIGTERM, then SIGKILL); returns False when none was running."""
    pid = _read_pid(config)
    if pid is None:
        config.pid_file.unlink(missing_ok=True)
        return False
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            break
        time.sleep(0.2)
    else:
        os.killpg(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.1)
    config.pid_file.unlink(missing_ok=True)
    return True


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reap it when it is our child
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def status(config: BrokerConfig) -> bool:
    """True only when the broker answers an admin call."""
    return answers(config.bootstrap)
