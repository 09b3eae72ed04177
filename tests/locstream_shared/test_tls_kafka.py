"""TLS to the brokers for real: certificates made here (``launch.certificates``: a CA, the broker's, a client's),
the local broker's TLS listeners (one node, and a three-node cluster), the ingest API, the projector, the edge and
the replay CLI over SSL with a client certificate (mutual TLS) and over SASL_SSL (SCRAM); a client that trusts
another CA is refused with the reason in its log and in ``/readyz``."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from launch import broker, certificates
from launch.broker_config import ClusterConfig
from locstream.kafka import KafkaUnreachableError, ensure_topic, make_producer, started, why_unreachable
from locstream.settings import KafkaSettings
from schemas.claims import Role
from schemas.events import Event
from tests.conftest import TEST_JWT_SECRET
from tests.support.events import location
from tests.support.kafka_io import append, read_all
from tests.support.maps import one_fix_through_the_services
from tests.support.ports import free_port
from tests.support.stack import Stack, eventually

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("tls-cluster")]

USER, PASSWORD = "locstream-svc", "a-scram-password-for-the-tls-test"


def _start(cluster: ClusterConfig) -> None:
    try:
        broker.start_cluster(cluster)
    except broker.BrokerError as exc:
        tails = [
            "\n".join(node.log_file.read_text(errors="replace").splitlines()[-30:])
            for node in cluster.members
            if node.log_file.exists()
        ]
        pytest.fail(f"could not start the TLS broker: {exc}\n" + "\n".join(tails))


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterConfig]:
    """One node with a TLS listener that asks for client certificates, and SCRAM over TLS (SASL_SSL)."""
    cluster = ClusterConfig(
        tmp_path_factory.mktemp("tls-broker"),
        port=broker.free_port_run(ClusterConfig.ports_needed(1)),
        nodes=1,
        tls=True,
        mtls=True,
        scram=(USER, PASSWORD),
    )
    _start(cluster)
    try:
        yield cluster
    finally:
        broker.stop_cluster(cluster)


def secure(cluster: ClusterConfig, protocol: str, topic: str = "locations.tls", **extra: object) -> KafkaSettings:
    """Settings for ``protocol``: SSL with this client's certificate, or SASL_SSL with SCRAM (no certificate)."""
    tls = cluster.tls_files
    assert tls is not None
    if protocol == "SSL":
        return KafkaSettings(
            bootstrap_servers=cluster.tls_bootstrap,
            topic=topic,
            security_protocol="SSL",
            ssl_cafile=tls.ca,
            ssl_certfile=tls.client_cert,
            ssl_keyfile=tls.client_key,
            **extra,  # type: ignore[arg-type]
        )
    return KafkaSettings(
        bootstrap_servers=cluster.scram_bootstrap,
        topic=topic,
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username=USER,
        sasl_password=SecretStr(PASSWORD),
        ssl_cafile=tls.ca,
        **extra,  # type: ignore[arg-type]
    )


def env_of(kafka: KafkaSettings, data_dir: Path) -> dict[str, str]:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "KAFKA_TOPIC": kafka.topic,
        "KAFKA_DEVICES_TOPIC": f"{kafka.topic}.devices",
        "KAFKA_GEOFENCES_TOPIC": f"{kafka.topic}.geofences",
        "KAFKA_SECURITY_PROTOCOL": kafka.security_protocol,
        "LOCSTREAM_JWT_SECRET": TEST_JWT_SECRET,
        "LOCSTREAM_DATA_DIR": str(data_dir),
    }
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "sasl_mechanism", "sasl_username"):
        value = getattr(kafka, name)
        if value is not None:
            env[f"KAFKA_{name.upper()}"] = str(value)
    if kafka.sasl_password is not None:
        env["KAFKA_SASL_PASSWORD"] = kafka.sasl_password.get_secret_value()
    return env


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
async def test_the_services_and_the_replay_cli_run_over_tls(
    tls_broker: ClusterConfig, tmp_path: Path, protocol: str
) -> None:
    kafka = secure(tls_broker, protocol, topic=f"locations.tls.{protocol.lower()}")
    stack = Stack(
        env=env_of(kafka, tmp_path / "data"), kafka=kafka, data_dir=tmp_path / "data", log_dir=tmp_path, port=free_port
    )
    try:
        began = datetime.now(UTC) - timedelta(seconds=1)
        event_id = await one_fix_through_the_services(stack)

        out = tmp_path / "export.ndjson"
        end = datetime.now(UTC) + timedelta(seconds=1)
        code, _, stderr = await stack.replay_cli(
            "--tenant",
            "acme-fiber",
            "--from",
            began.isoformat(),
            "--to",
            end.isoformat(),
            "--out",
            str(out),
            token=stack.token("acme-fiber", Role.ANALYST),
        )
        assert code == 0, stderr
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert [line["event_id"] for line in lines] == [event_id]
        for service in stack.services:  # every service's clients went through the TLS listener, no other
            assert "CERTIFICATE_VERIFY_FAILED" not in service.log()
    finally:
        await stack.close()


async def test_the_tls_listener_asks_for_a_client_certificate(tls_broker: ClusterConfig) -> None:
    without = secure(tls_broker, "SSL").model_copy(update={"ssl_certfile": None, "ssl_keyfile": None})
    producer = make_producer(without)
    with pytest.raises(Exception):  # noqa: B017 (refused in the handshake or at the first request)
        async with asyncio.timeout(20):
            await started(producer, without)
            await producer.send_and_wait(without.topic, b"{}")
    await producer.stop()


async def test_a_wrong_scram_password_over_tls_is_named_as_such(tls_broker: ClusterConfig) -> None:
    wrong = secure(tls_broker, "SASL_SSL").model_copy(update={"sasl_password": SecretStr("not-the-password")})
    producer = make_producer(wrong)
    with pytest.raises(KafkaUnreachableError, match=r"SaslAuthenticationFailed.*invalid credentials"):
        await started(producer, wrong)
    await producer.stop()


async def test_a_client_trusting_another_ca_is_refused_with_the_reason_in_its_log_and_readyz(tmp_path: Path) -> None:
    cluster = ClusterConfig(
        tmp_path / "broker", port=broker.free_port_run(ClusterConfig.ports_needed(1)), nodes=1, tls=True
    )
    await asyncio.to_thread(_start, cluster)
    try:
        assert cluster.tls_files is not None
        other = certificates.generate(tmp_path / "other-ca", ca_name="someone else's CA")
        wrong = secure(cluster, "SSL").model_copy(update={"ssl_cafile": other.ca})
        assert "certificate is not trusted" in await why_unreachable(wrong)

        # At start-up: the process stops, and its log says why.
        port = free_port()
        env = {**os.environ, **env_of(wrong, tmp_path / "data")}
        log_path = tmp_path / "producers-wrong-ca.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "launch.cli", "producers", "--port", str(port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            code = await asyncio.to_thread(process.wait, 90)
        assert code != 0
        text = log_path.read_text()
        assert "the broker's certificate is not trusted by KAFKA_SSL_CAFILE" in text, text[-3000:]
        assert "certificate verify failed" in text

        # While running: the broker comes back with a certificate of another CA; /readyz says why it is not ready.
        trusted = tmp_path / "trusted-ca.pem"  # the services' own copy: the broker's directory is about to change
        shutil.copy(cluster.tls_files.ca, trusted)
        right = secure(cluster, "SSL").model_copy(update={"ssl_cafile": trusted})
        stack = Stack(
            env=env_of(right, tmp_path / "data"),
            kafka=right,
            data_dir=tmp_path / "data",
            log_dir=tmp_path,
            port=free_port,
        )
        try:
            api = await stack.start("producers")
            broker.stop_cluster(cluster)
            shutil.rmtree(cluster.tls_files.directory)
            certificates.generate(cluster.tls_files.directory, ca_name="a CA the services never heard of")
            await asyncio.to_thread(_start, cluster)

            said: list[str] = []

            async def refused() -> str | None:
                async with httpx.AsyncClient(timeout=5) as http:
                    answer = await http.get(f"{api.url}/readyz")
                said.append(reason := answer.json()["reason"])
                return reason if answer.status_code == 503 and "not trusted" in reason else None

            try:
                reason = await eventually(refused, timeout=60, what="/readyz to say the certificate is not trusted")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; /readyz said {sorted(set(said))}") from None
            assert f"the broker's certificate is not trusted by KAFKA_SSL_CAFILE={trusted}" in reason
        finally:
            await stack.close()
    finally:
        broker.stop_cluster(cluster)


async def test_the_cli_runs_a_three_node_cluster_with_mutual_tls_and_tells_each_nodes_role(tmp_path: Path) -> None:
    """``locstream broker start --nodes 3 --tls --mtls``, ``status`` and ``stop``, and TLS through every node."""
    port = broker.free_port_run(ClusterConfig.ports_needed(3))
    where = ["--data-dir", str(tmp_path), "--port", str(port)]
    started_cli = await _cli("start", *where, "--nodes", "3", "--tls", "--mtls")
    assert started_cli.returncode == 0, started_cli.stderr
    cluster = ClusterConfig.load(tmp_path)
    assert cluster is not None and cluster.nodes == 3 and cluster.mtls
    try:
        assert "client certificate" in started_cli.stdout and cluster.tls_bootstrap in started_cli.stdout
        kafka = secure(cluster, "SSL", topic="locations.tls.cluster")
        fixes: list[Event] = [location("acme-fiber", f"tech-{i}", datetime.now(UTC), i / 10) for i in range(6)]
        await ensure_topic(kafka)  # over TLS too: the admin client, created on three replicas
        await append(kafka, fixes)
        assert [str(e.event_id) for e, _ in await read_all(kafka)] == [str(f.event_id) for f in fixes]
        for node in cluster.members:  # each node's own TLS listener answers, with the client certificate
            alone = kafka.model_copy(update={"bootstrap_servers": node.tls_bootstrap})
            assert "connects (SSL)" in await why_unreachable(alone)

        status = await _cli("status", *where)
        assert status.returncode == 0, status.stdout + status.stderr
        lines = status.stdout.splitlines()
        assert (
            sum("active controller" in line for line in lines) == 1 and sum(": running" in line for line in lines) == 3
        )
        assert "under-replicated partitions: none" in lines

        second = cluster.node(2)
        pid = broker.pid_of(second)
        assert pid is not None
        os.killpg(pid, 9)

        async def reported() -> subprocess.CompletedProcess[str] | None:
            answer = await _cli("status", *where)
            return answer if "(in sync" in answer.stdout else None

        degraded = await eventually(reported, timeout=60, what="status to list the under-replicated partitions")
        assert degraded.returncode == 1
        assert f"node 2 on {second.bootstrap}: down" in degraded.stdout
        lagging = re.findall(
            rf"{re.escape(kafka.topic)}-\d+ \(in sync \[([\d, ]+)\] of \[([\d, ]+)\]\)", degraded.stdout
        )
        assert lagging, degraded.stdout
        for in_sync, replicas in lagging:  # the partitions short of node 2, which holds a replica of each
            assert "2" not in in_sync.split(", ") and sorted(replicas.split(", ")) == ["1", "2", "3"]
    finally:
        stopped = await _cli("stop", *where)
    assert stopped.returncode == 0 and "cluster stopped" in stopped.stdout
    assert all(broker.pid_of(node) is None for node in cluster.members)


async def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "launch.cli", "broker", *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_certificates_are_made_once_and_kept(tmp_path: Path) -> None:
    first = certificates.generate(tmp_path)
    ca = first.ca.read_bytes()
    assert certificates.generate(tmp_path).ca.read_bytes() == ca  # kept: the brokers' trust survives a restart
    assert first.broker.read_text().startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8, as Kafka's PEM store reads
    assert oct(first.client_key.stat().st_mode & 0o777) == "0o600"
