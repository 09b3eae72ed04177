"""A real single-node Apache Kafka broker (KRaft, broker+controller in one JVM) from Maven Central jars.

``broker/pom.xml`` pins the Kafka version; ``mvn dependency:copy-dependencies`` puts its runtime jars in
``broker/target/lib``. The broker binds to 127.0.0.1 only. Its data, log and pid file live in one data dir.
"""

from __future__ import annotations

import asyncio
import base64
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

PROJECT_ROOT = Path(__file__).resolve().parents[1]
POM = PROJECT_ROOT / "broker" / "pom.xml"
LIB_DIR = PROJECT_ROOT / "broker" / "target" / "lib"


class BrokerError(RuntimeError):
    """The broker could not be resolved, formatted, started or stopped."""


def free_port_pair(rng: random.Random | None = None) -> int:
    """A port that is free together with the next one (the broker's and its controller's).

    Chosen below Linux's ephemeral range (32768 and up), so no client socket opened meanwhile can take either.
    """
    rng = rng or random.Random()
    for _ in range(200):
        port = rng.randrange(20_000, 32_000)
        with socket.socket() as first, socket.socket() as second:
            try:
                first.bind(("127.0.0.1", port))
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise BrokerError("no two consecutive free ports between 20000 and 32000")


@dataclass(frozen=True)
class BrokerConfig:
    data_dir: Path
    port: int = 9092
    heap: str = "512m"
    # A user and password: a SASL listener (SCRAM-SHA-256 and -512) on ``scram_port`` beside the plaintext one,
    # with that user's credentials written when the storage is formatted.
    scram: tuple[str, str] | None = None
    scram_port: int = 0

    @property
    def scram_bootstrap(self) -> str:
        return f"127.0.0.1:{self.scram_port}"

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


def server_properties(config: BrokerConfig) -> str:
    """One node as broker and controller, static quorum, tuned for a single machine."""
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{config.controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{config.port},CONTROLLER://127.0.0.1:{config.controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{config.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(config.log_dirs),
        "num.partitions": "6",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",  # the default 50 slows the first group join
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
    }
    if config.scram is not None:
        props["listeners"] += f",SASL_PLAINTEXT://127.0.0.1:{config.scram_port}"
        props["advertised.listeners"] += f",SASL_PLAINTEXT://127.0.0.1:{config.scram_port}"
        props["listener.security.protocol.map"] += ",SASL_PLAINTEXT:SASL_PLAINTEXT"
        props["sasl.enabled.mechanisms"] = "SCRAM-SHA-256,SCRAM-SHA-512"
        for mechanism in ("scram-sha-256", "scram-sha-512"):
            props[f"listener.name.sasl_plaintext.{mechanism}.sasl.jaas.config"] = (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            )
    return "".join(f"{key}={value}\n" for key, value in props.items())


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
    """Start the broker unless it already answers; returns False when it was already running."""
    if _read_pid(config) is not None and answers(config.bootstrap):
        return False
    classpath = f"{resolve_jars()}/*"
    config.data_dir.mkdir(parents=True, exist_ok=True)
    config.properties_file.write_text(server_properties(config))
    format_storage(config, classpath)
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
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            config.pid_file.unlink(missing_ok=True)
            raise BrokerError(f"the broker exited during start-up; see {config.log_file}")
        if answers(config.bootstrap, timeout=2.0):
            return True
        time.sleep(0.5)
    stop(config)
    raise BrokerError(f"broker did not answer within {timeout:.0f}s; see {config.log_file}")


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
