"""Secure broker connections for real: a broker with a SCRAM listener (SASL_PLAINTEXT, SCRAM-SHA-256 and -512),
the ingest API, the projector and the edge connecting through it only, and a wrong password refused."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import certifi
import pytest
from aiokafka.errors import KafkaError
from pydantic import SecretStr

from launch import broker
from launch.broker_config import BrokerConfig
from locstream.kafka import connection_options, make_producer
from locstream.settings import KafkaSettings
from tests.conftest import TEST_JWT_SECRET
from tests.support.kafka_io import read_all
from tests.support.maps import one_fix_through_the_services
from tests.support.ports import free_port
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

USER, PASSWORD = "locstream-svc", "a-scram-password-for-the-test"


@pytest.fixture
def scram_broker(tmp_path: Path) -> Iterator[BrokerConfig]:
    port = broker.free_port_run(3)  # the broker's, its controller's and the SASL listener's
    config = BrokerConfig(data_dir=tmp_path / "broker", port=port, scram=(USER, PASSWORD), scram_port=port + 2)
    try:
        broker.start(config)
    except broker.BrokerError as exc:
        tail = config.log_file.read_text(errors="replace").splitlines()[-40:] if config.log_file.exists() else []
        pytest.fail(f"could not start the SCRAM broker: {exc}\n" + "\n".join(tail))
    try:
        yield config
    finally:
        broker.stop(config)


def _scram(config: BrokerConfig, mechanism: str, password: str = PASSWORD) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=config.scram_bootstrap,
        topic="locations.secure",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism=mechanism,
        sasl_username=USER,
        sasl_password=SecretStr(password),
    )


async def test_the_services_run_through_a_scram_listener_and_a_wrong_password_is_refused(
    scram_broker: BrokerConfig, tmp_path: Path
) -> None:
    kafka = _scram(scram_broker, "SCRAM-SHA-512")
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "KAFKA_TOPIC": kafka.topic,
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": USER,
        "KAFKA_SASL_PASSWORD": PASSWORD,
        "LOCSTREAM_JWT_SECRET": TEST_JWT_SECRET,
        "LOCSTREAM_DATA_DIR": str(tmp_path / "data"),
    }
    stack = Stack(env=env, kafka=kafka, data_dir=tmp_path / "data", log_dir=tmp_path, port=free_port)
    try:
        event_id = await one_fix_through_the_services(stack)
        events = await read_all(_scram(scram_broker, "SCRAM-SHA-256"))  # an observer through the other mechanism
        assert [str(e.event_id) for e, _ in events] == [event_id]
    finally:
        await stack.close()
    wrong = make_producer(_scram(scram_broker, "SCRAM-SHA-512", password="not-the-password"))
    with pytest.raises(KafkaError):
        async with asyncio.timeout(30):
            await wrong.start()
    await wrong.stop()


def test_sasl_needs_credentials_and_tls_takes_a_ca_bundle() -> None:
    with pytest.raises(ValueError, match="KAFKA_SASL_USERNAME"):
        KafkaSettings(security_protocol="SASL_SSL")
    settings = KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_username="u",
        sasl_password=SecretStr("p" * 12),
        ssl_cafile=Path(certifi.where()),
    )
    options = connection_options(settings)
    assert options["security_protocol"] == "SASL_SSL" and options["sasl_mechanism"] == "PLAIN"
    assert options["ssl_context"].verify_mode.name == "CERT_REQUIRED" and options["sasl_plain_password"] == "p" * 12
    assert "p" * 12 not in repr(settings)  # the password never shows in a log of the settings


async def test_an_unreachable_broker_is_explained_per_address() -> None:
    from locstream.kafka import why_unreachable

    nobody = free_port()
    reason = await why_unreachable(KafkaSettings(bootstrap_servers=f"127.0.0.1:{nobody},nohost.invalid:9092"))
    first, second = reason.split("; ")
    assert first == f"127.0.0.1:{nobody}: connection refused (nothing listens there)"
    assert second.startswith("nohost.invalid:9092: ") and "connects" not in second
    with pytest.raises(ValueError, match="KAFKA_SSL_KEYFILE needs KAFKA_SSL_CERTFILE"):
        KafkaSettings(security_protocol="SSL", ssl_keyfile=Path("client-key.pem"))
