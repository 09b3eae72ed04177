"""A Kafka node's and a cluster's configuration, and the ``server.properties`` it is started with. Pure (a
cluster's description file aside): ``launch/broker.py`` formats, starts and stops the processes.

Brokers bind to 127.0.0.1 only. A node's data, log and pid file live in its data dir. A node may open a TLS
listener (certificates from ``launch.certificates``, client certificates required with ``mtls``) and a SASL
listener (SCRAM), over TLS when it has one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from launch.certificates import TlsFiles


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
