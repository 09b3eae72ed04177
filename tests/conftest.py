"""Test fixtures: a real Kafka broker for the session, a fresh topic per test, services as processes.

When ``KAFKA_BOOTSTRAP_SERVERS`` is unset, the session starts the project's own broker (``launch.broker``,
jars from Maven Central) on a free port and stops it at the end; with test processes (``-n``), one for them all.
When no broker can be had, every integration test fails with the reason: they never skip.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from launch import broker
from launch import keycloak as keycloak_local
from launch.broker_config import BrokerConfig
from launch.postgres_local import PostgresUnavailableError, fresh_database, throwaway_cluster
from launch.prefork import stop_shared_launcher
from locstream.settings import KafkaSettings
from tests.support.jwks_provider import JwksProvider
from tests.support.ports import free_port
from tests.support.stack import Stack

TEST_JWT_SECRET = "test-secret-for-locstream-integration-tests-0123456789"

# The JVMs the tests start (brokers, Keycloak) live minutes at most, where the optimising compiler (C2) costs more
# CPU than it saves: with the client compiler alone a broker was ready on 2.6 CPU-s instead of 4.9 and idled on 0.7
# per 30 s instead of 1.2, and Keycloak started on 20 instead of 34. Only where nobody chose otherwise.
os.environ.setdefault(
    "KAFKA_JVM_PERFORMANCE_OPTS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:-UsePerfData -Djava.awt.headless=true"
)
os.environ.setdefault("JAVA_OPTS_APPEND", "-XX:TieredStopAtLevel=1")  # read by Keycloak's kc.sh


# Fixtures that start or reach a real service: a test that uses one (even through another fixture) is an integration
# test, whatever its module says, so ``make unit`` (``-m "not integration"``) runs only what needs none.
_SERVICE_FIXTURES = frozenset({"kafka_bootstrap", "postgres_server", "keycloak", "fault_cluster"})


@pytest.hookimpl(trylast=True)  # after pytest-xdist's, which gives grouped tests' ids their group
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
    # ``--dist loadgroup`` keeps a module's tests (and its module fixture: a cluster, Keycloak) on one test process by
    # the "@group" its ids end with. pytest 9.2 silently dropped that (pytest-xdist#1386): say so rather than start
    # one cluster per test process.
    if getattr(config.option, "loadgroup", False):
        ungrouped = [item.nodeid for item in items if item.get_closest_marker("xdist_group") and "@" not in item.nodeid]
        if ungrouped:
            raise pytest.UsageError(f"xdist_group is not applied (pytest-xdist#1386?): {ungrouped[:3]}")


# With test processes (pytest-xdist's -n), the controlling process starts one broker for them all before it starts
# them, and tells them where it is here (not in KAFKA_BOOTSTRAP_SERVERS, which services and commands would inherit).
# A broker each cost about 35 CPU-seconds of start and idle apiece on a 2-core machine; every test has topics of its
# own, and the tests that stop or hurt a broker start their own.
_SHARED_BROKER_ENV = "LOCSTREAM_TEST_SHARED_BROKER"
_shared_broker: BrokerConfig | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _shared_broker
    is_controller = getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput")
    if not is_controller or os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or os.environ.get(_SHARED_BROKER_ENV):
        return
    data_dir = Path(tempfile.mkdtemp(prefix="locstream-test-broker-"))
    shared = BrokerConfig(data_dir=data_dir, port=broker.free_port_pair())
    try:
        broker.start(shared)
    except broker.BrokerError:  # each test process tries its own, and its integration tests fail with the reason
        shutil.rmtree(shared.data_dir, ignore_errors=True)
        return
    _shared_broker = shared
    os.environ[_SHARED_BROKER_ENV] = shared.bootstrap  # the test processes inherit it


def pytest_unconfigure(config: pytest.Config) -> None:
    global _shared_broker
    if _shared_broker is not None:
        broker.stop(_shared_broker)
        shutil.rmtree(_shared_broker.data_dir, ignore_errors=True)
        os.environ.pop(_SHARED_BROKER_ENV, None)
        _shared_broker = None


@pytest.fixture(scope="session", autouse=True)
def _service_fork_server() -> Iterator[None]:
    """The fork server ``Stack.start`` starts on first use (``launch/prefork.py``) ends with the session."""
    yield
    stop_shared_launcher()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or os.environ.get(_SHARED_BROKER_ENV)
    if external:
        if not broker.answers(external, timeout=10.0):
            pytest.fail(f"the broker at {external} does not answer an admin call")
        yield external
        return
    with tempfile.TemporaryDirectory(prefix="locstream-test-broker-") as data_dir:
        config = BrokerConfig(data_dir=Path(data_dir), port=broker.free_port_pair())
        try:
            broker.start(config)
        except broker.BrokerError as exc:  # the data dir goes with this fixture: show the log's end here
            tail = config.log_file.read_text(errors="replace").splitlines()[-40:] if config.log_file.exists() else []
            pytest.fail(f"could not start the test broker: {exc}\n" + "\n".join(tail))
        try:
            yield config.bootstrap
        finally:
            broker.stop(config)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server's admin DSN: LOCSTREAM_TEST_POSTGRES_DSN, or a throwaway cluster started here."""
    external = os.environ.get("LOCSTREAM_TEST_POSTGRES_DSN")
    if external:
        yield external
        return
    try:
        with throwaway_cluster(free_port()) as dsn:
            yield dsn
    except PostgresUnavailableError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def keycloak(tmp_path_factory: pytest.TempPathFactory) -> Iterator[keycloak_local.KeycloakConfig]:
    """A real Keycloak (``launch/keycloak.py``, from Maven Central, Java 21+) with the example realm imported as
    ``locstream`` and again as ``elsewhere`` (same users, other keys and issuer). Per module: its JVM is gone
    before the timing-sensitive tests that follow."""
    log_dir = tmp_path_factory.mktemp("keycloak")
    config = keycloak_local.KeycloakConfig(port=free_port(), management_port=free_port(), log_file=log_dir / "kc.log")
    try:
        process = keycloak_local.start(config)
    except keycloak_local.KeycloakError as exc:
        tail = config.log_file.read_text(errors="replace").splitlines()[-40:] if config.log_file.exists() else []
        pytest.fail(f"could not start Keycloak: {exc}\n" + "\n".join(tail))
    try:
        admin = keycloak_local.Admin(config)
        admin.import_realm("locstream")
        admin.import_realm("elsewhere")
        yield config
    finally:
        keycloak_local.stop(process)


@pytest.fixture
async def postgres_dsn(postgres_server: str) -> AsyncIterator[str]:
    """A fresh, empty database of this test's own on the session's server."""
    async with fresh_database(postgres_server) as dsn:
        yield dsn


@pytest.fixture
def kafka(kafka_bootstrap: str) -> KafkaSettings:
    """Settings for a topic of this test's own, so tests never see each other's events."""
    topic = f"locations.test.{uuid.uuid4().hex[:12]}"
    return KafkaSettings(
        bootstrap_servers=kafka_bootstrap,
        topic=topic,
        devices_topic=f"{topic}.devices",
        geofences_topic=f"{topic}.geofences",
        rules_topic=f"{topic}.rules",
        alert_rules_topic=f"{topic}.alert-rules",
    )


@pytest.fixture
async def stack(kafka: KafkaSettings, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    """Starts services as separate processes on this test's topic; all are killed at the end.

    Their tokens are HS256 with a shared secret, or, for a test parametrized with ``indirect=["stack"]`` and
    ``"jwks"``, RS256 from a stand-in identity provider's JWKS (``tests/support/jwks_provider.py``).
    """
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "KAFKA_TOPIC": kafka.topic,
        "KAFKA_DEVICES_TOPIC": kafka.devices_topic,
        "KAFKA_GEOFENCES_TOPIC": kafka.geofences_topic,
        "KAFKA_RULES_TOPIC": kafka.rules_topic,
        "KAFKA_ALERT_RULES_TOPIC": kafka.alert_rules_topic,
        "KAFKA_PARTITIONS": str(kafka.partitions),
        "LOCSTREAM_DATA_DIR": str(tmp_path / "data"),
        # A consumer group per test: projectors of tests that share a broker would otherwise rebalance each other,
        # and a killed one would hold the others' group until its session timed out.
        "LOCSTREAM_PROJECTOR_GROUP_ID": f"locstream-projector.{kafka.topic}",
    }
    with ExitStack() as resources:
        provider = None
        if getattr(request, "param", "hs256") == "jwks":
            provider = resources.enter_context(JwksProvider().running())
            env.update(provider.env())
        else:
            env["LOCSTREAM_JWT_SECRET"] = TEST_JWT_SECRET
        stack = Stack(
            env=env, kafka=kafka, data_dir=tmp_path / "data", log_dir=tmp_path, port=free_port, provider=provider
        )
        try:
            yield stack
        finally:
            await stack.close()
