"""``locstream broker``: start is idempotent, status answers only when the broker does, stop leaves nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from launch import broker
from launch.broker_config import BrokerConfig, ClusterConfig, server_properties

pytestmark = pytest.mark.integration


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "launch.cli", *args], capture_output=True, text=True, timeout=180, check=False
    )


def test_start_twice_status_stop_leaves_no_process(tmp_path: Path) -> None:
    port = str(broker.free_port_pair())  # not free_port(): the controller's port + 1 must be free as well
    where = ["--data-dir", str(tmp_path / "broker"), "--port", port]
    assert cli("broker", "status", *where).returncode == 1
    started = cli("broker", "start", *where)
    assert started.returncode == 0, started.stderr
    try:
        pid = int((tmp_path / "broker" / "broker.pid").read_text())
        again = cli("broker", "start", *where)
        assert again.returncode == 0 and "already running" in again.stdout
        assert int((tmp_path / "broker" / "broker.pid").read_text()) == pid
        assert cli("broker", "status", *where).returncode == 0
    finally:
        stopped = cli("broker", "stop", *where)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert cli("broker", "status", *where).returncode == 1
    assert cli("broker", "stop", *where).stdout.strip() == "broker was not running"


def test_storage_formats_with_a_cluster_id_that_begins_with_a_dash(tmp_path: Path) -> None:
    # base64url ids begin with "-" once in 64 starts; passed as a separate argument, the format step refused it
    config = BrokerConfig(data_dir=tmp_path, port=broker.free_port_pair())
    config.data_dir.mkdir(parents=True, exist_ok=True)
    config.properties_file.write_text(server_properties(config))
    broker.format_storage(config, f"{broker.resolve_jars()}/*", cluster_id="-dashFirstAbCdEfGhIjKlMn")
    assert "cluster.id=-dashFirstAbCdEfGhIjKlMn" in (config.log_dirs / "meta.properties").read_text()


def test_a_cluster_node_is_a_voter_among_all_and_keeps_three_replicas_written_to_two(tmp_path: Path) -> None:
    cluster = ClusterConfig(tmp_path, port=30000, nodes=3, tls=True, mtls=True)
    node = cluster.node(2)
    props = dict(line.split("=", 1) for line in server_properties(node).splitlines())
    assert props["node.id"] == "2" and node.port == 30002 and node.controller_port == 30003
    assert props["controller.quorum.voters"] == "1@127.0.0.1:30001,2@127.0.0.1:30003,3@127.0.0.1:30005"
    assert props["default.replication.factor"] == props["offsets.topic.replication.factor"] == "3"
    assert props["min.insync.replicas"] == props["transaction.state.log.min.isr"] == "2"
    assert f"SSL://127.0.0.1:{node.tls_port}" in props["listeners"] and node.tls_port == 30007
    assert props["listener.name.ssl.ssl.client.auth"] == "required"
    assert cluster.bootstrap == "127.0.0.1:30000,127.0.0.1:30002,127.0.0.1:30004"
    single = dict(line.split("=", 1) for line in server_properties(BrokerConfig(tmp_path)).splitlines())
    assert single["min.insync.replicas"] == "1" and single["controller.quorum.voters"] == "1@127.0.0.1:9093"


def test_describe_quorum_and_partition_replicas_are_read_from_kafkas_answers() -> None:
    from locstream.kafka_cluster import partitions_from, quorum_from

    answer = {
        "error_code": 0,
        "topics": [
            {
                "topic_name": "__cluster_metadata",
                "partitions": [
                    {
                        "partition_index": 0,
                        "error_code": 0,
                        "leader_id": 3,
                        "leader_epoch": 7,
                        "high_watermark": 120,
                        "current_voters": [{"replica_id": 3}, {"replica_id": 1}, {"replica_id": 2}],
                        "observers": [],
                    }
                ],
            }
        ],
    }
    quorum = quorum_from(answer)
    assert (quorum.leader_id, quorum.leader_epoch, quorum.voters) == (3, 7, (1, 2, 3))
    with pytest.raises(ValueError, match="error code 15"):
        quorum_from({**answer, "error_code": 15})
    described = [
        {
            "error_code": 0,
            "topic": "t",
            "partitions": [
                {"partition": 1, "leader": -1, "replicas": [1, 2, 3], "isr": [2]},
                {"partition": 0, "leader": 2, "replicas": [1, 2, 3], "isr": [1, 2, 3]},
            ],
        },
        {"error_code": 3, "topic": "gone", "partitions": []},
    ]
    partitions = partitions_from(described)
    assert [p.partition for p in partitions] == [0, 1]
    assert [p.under_replicated for p in partitions] == [False, True] and partitions[1].leader == -1
