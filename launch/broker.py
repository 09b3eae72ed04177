"""Real Apache Kafka brokers (KRaft, broker and controller in one JVM each) from Maven Central jars: one node, or
a cluster of several on one machine (``ClusterConfig``), each node a voter of the controller quorum.

``broker/pom.xml`` pins the Kafka version; ``mvn dependency:copy-dependencies`` puts its runtime jars in
``broker/target/lib``. What a node is configured with, and its ``server.properties``, are ``launch/broker_config.py``;
this module formats storage, starts, watches and stops the processes.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from launch.broker_config import BrokerConfig, ClusterConfig, server_properties
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
            *jvm_performance_options(),
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
            *jvm_performance_options(),
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


def jvm_performance_options() -> list[str]:
    """The JVM's collector and compiler options: ``$KAFKA_JVM_PERFORMANCE_OPTS`` when set (the variable Kafka's own
    ``kafka-server-start.sh`` reads), else G1 as Kafka's scripts choose it. The tests set it to the client compiler
    alone (tests/conftest.py): their brokers live minutes at most, where C2 cost more CPU than it saved."""
    configured = os.environ.get("KAFKA_JVM_PERFORMANCE_OPTS")
    if configured is not None:
        return shlex.split(configured)
    return ["-XX:+UseG1GC", "-Djava.awt.headless=true"]


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
