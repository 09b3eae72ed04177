"""Small typed adapters around aiokafka (which ships no type hints): client factories and the topic."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context

from locstream.settings import KafkaSettings

log = logging.getLogger(__name__)

# Append time, not device time, orders the log: time-range reads stay monotonic (device time is in the payload).
TOPIC_CONFIG = {"message.timestamp.type": "LogAppendTime"}


def connection_options(settings: KafkaSettings) -> dict[str, Any]:
    """How every client (producer, consumer, admin) reaches the brokers: plaintext, TLS, SASL (PLAIN or SCRAM)."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None)
    if settings.security_protocol.startswith("SASL_"):
        assert settings.sasl_password is not None  # checked by the settings
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return options


def make_producer(settings: KafkaSettings, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent producer (which forces acks=all): a 202 means every in-sync replica has the event."""
    options: dict[str, Any] = {
        **connection_options(settings),
        "client_id": f"{settings.client_id}-producer",
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 0,
        "request_timeout_ms": settings.request_timeout_ms,
        "compression_type": None if settings.compression == "none" else settings.compression,
        "max_batch_size": 524_288,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


def make_consumer(settings: KafkaSettings, *, group_id: str | None, **overrides: Any) -> AIOKafkaConsumer:
    """A consumer that never commits by itself: positions are stored by whoever applies the records."""
    options: dict[str, Any] = {
        **connection_options(settings),
        "client_id": f"{settings.client_id}-consumer",
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "request_timeout_ms": max(settings.request_timeout_ms, 40_000),
        "isolation_level": "read_uncommitted",
    }
    options.update(overrides)
    return AIOKafkaConsumer(**options)


def _admin(settings: KafkaSettings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        **connection_options(settings),
        client_id=f"{settings.client_id}-admin",
        request_timeout_ms=settings.request_timeout_ms,
    )


async def ensure_topic(settings: KafkaSettings, wait_seconds: float = 30.0) -> list[TopicPartition]:
    """Create the events topic if it is missing (the broker does not auto-create topics).

    Returns its partitions once every one has a leader, so consumers can be assigned right away.
    """
    admin = _admin(settings)
    await admin.start()
    try:
        if settings.topic not in await admin.list_topics():
            configs = {**TOPIC_CONFIG, "retention.ms": str(int(settings.retention_days * 86_400_000))}
            topic = NewTopic(settings.topic, settings.partitions, settings.replication_factor, topic_configs=configs)
            try:
                await admin.create_topics([topic])
                log.info("created topic %s with %d partitions", settings.topic, settings.partitions)
            except TopicAlreadyExistsError:
                pass
        return await _led_partitions(admin, settings.topic, wait_seconds)
    finally:
        await admin.close()


async def ensure_compacted_topic(settings: KafkaSettings, name: str, wait_seconds: float = 30.0) -> TopicPartition:
    """A one-partition topic that keeps the latest record per key (a table as a log: the devices), created when
    missing; its partition once it has a leader."""
    admin = _admin(settings)
    await admin.start()
    try:
        if name not in await admin.list_topics():
            topic = NewTopic(name, 1, settings.replication_factor, topic_configs={"cleanup.policy": "compact"})
            try:
                await admin.create_topics([topic])
                log.info("created compacted topic %s", name)
            except TopicAlreadyExistsError:
                pass
        (partition,) = await _led_partitions(admin, name, wait_seconds)
        return partition
    finally:
        await admin.close()


async def topic_partitions(settings: KafkaSettings, wait_seconds: float = 30.0) -> list[TopicPartition]:
    """The partitions of the events topic, which must exist (readers of the history do not create it)."""
    admin = _admin(settings)
    await admin.start()
    try:
        if settings.topic not in await admin.list_topics():
            raise LookupError(f"topic {settings.topic} does not exist")
        return await _led_partitions(admin, settings.topic, wait_seconds)
    finally:
        await admin.close()


async def _led_partitions(admin: AIOKafkaAdminClient, name: str, wait_seconds: float) -> list[TopicPartition]:
    deadline = time.monotonic() + wait_seconds
    while True:
        (described,) = await admin.describe_topics([name])
        partitions = described.get("partitions") or []
        if described["error_code"] == 0 and partitions and all(p["leader"] >= 0 for p in partitions):
            return [TopicPartition(name, p["partition"]) for p in sorted(partitions, key=lambda p: int(p["partition"]))]
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {name!r} has no leader for every partition yet")
        await asyncio.sleep(0.2)
