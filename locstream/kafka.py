"""Small typed adapters around aiokafka (which ships no type hints): client factories and the topic."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import ssl
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.codec import lz4_encode as _aiokafka_lz4_encode
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.record import default_records as _py_records

from locstream.settings import KafkaSettings
from schemas.events import Event, encode_event

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
        options["ssl_context"] = tls_context(settings)
    if settings.security_protocol.startswith("SASL_"):
        assert settings.sasl_password is not None  # checked by the settings
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return options


def tls_context(settings: KafkaSettings) -> ssl.SSLContext:
    """Verify the brokers with KAFKA_SSL_CAFILE (else the system's CAs); show KAFKA_SSL_CERTFILE when asked."""
    context: ssl.SSLContext = create_ssl_context(
        cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None,
        certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
        keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
    )
    return context


class KafkaUnreachableError(ConnectionError):
    """No broker could be reached; the message says why as far as it can be told (refused, TLS, certificate)."""


async def why_unreachable(settings: KafkaSettings, seconds_each: float = 2.0) -> str:
    """Why the bootstrap brokers cannot be reached, found by connecting to each (all at once) the way the clients
    do: refused, silent, or (SSL, SASL_SSL) the TLS handshake's own complaint, such as a certificate the CA does not
    trust."""
    addresses = [address.strip() for address in settings.bootstrap_servers.split(",")]
    reasons = await asyncio.gather(*(_try_connecting(settings, address, seconds_each) for address in addresses))
    return "; ".join(f"{address}: {reason}" for address, reason in zip(addresses, reasons, strict=True))


async def _try_connecting(settings: KafkaSettings, address: str, seconds: float) -> str:
    """One connection as the clients open it (TCP, TLS, the SASL login), with aiokafka's own ``create_conn``,
    whose errors its bootstrap only logs."""
    host, _, port = address.rpartition(":")
    options = connection_options(settings)
    del options["bootstrap_servers"]
    try:
        async with asyncio.timeout(seconds):
            connection = await create_conn(host, int(port), request_timeout_ms=int(seconds * 1000), **options)
        connection.close()
        return f"connects ({settings.security_protocol})"
    except ssl.SSLCertVerificationError as exc:
        trusted = f"KAFKA_SSL_CAFILE={settings.ssl_cafile}" if settings.ssl_cafile else "the system's CAs"
        return f"TLS: the broker's certificate is not trusted by {trusted} ({exc.verify_message})"
    except ssl.SSLError as exc:
        return f"TLS: {exc.reason or exc}"
    except TimeoutError:
        return f"no answer within {seconds:g} s"
    except ConnectionRefusedError:
        return "connection refused (nothing listens there)"
    except KafkaError as exc:  # a refused SASL login, a listener of another protocol
        return f"{settings.security_protocol}: {exc}"
    except (OSError, ValueError) as exc:
        return str(getattr(exc, "strerror", None) or exc)


async def started(client: Any, settings: KafkaSettings) -> None:
    """``client.start()``; when no broker can be reached, ``KafkaUnreachableError`` saying why (the log line and
    ``/readyz``'s reason an operator reads, instead of aiokafka's "Unable to bootstrap")."""
    try:
        await client.start()
    except KafkaConnectionError as exc:
        raise KafkaUnreachableError(
            f"cannot reach Kafka at {settings.bootstrap_servers} over {settings.security_protocol}: "
            + await why_unreachable(settings)
        ) from exc


LZ4_LEVEL = 1


def fast_lz4() -> None:
    """Have aiokafka's record batches compressed with lz4 at ``LZ4_LEVEL``. aiokafka 0.11 moved to cramjam and to
    level 9 (LZ4-HC), with no setting to choose (aio-libs/aiokafka#1028, open): measured here on a batch of 1,500
    location events, 119 MB/s and a ratio of 5.5 at level 9, 1,241 MB/s and 5.0 at level 1 (3.7 µs of a producer's
    CPU per record against 0.35); decoding is the same. Its batch builders (the C one and the Python one) look the
    codec up by name at each build: set here, once, before any producer builds a batch."""
    modules: list[Any] = [_py_records]
    with contextlib.suppress(ImportError):  # aiokafka built without its C extension has the Python builder only
        modules.append(importlib.import_module("aiokafka.record._crecords.default_records"))
    for module in modules:
        if getattr(module.lz4_encode, "locstream_level", None) != LZ4_LEVEL:
            module.lz4_encode = _lz4_at_level


def _lz4_at_level(payload: Any, level: int = LZ4_LEVEL) -> bytes:
    compressed: bytes = _aiokafka_lz4_encode(payload, level=LZ4_LEVEL)
    return compressed


_lz4_at_level.locstream_level = LZ4_LEVEL  # type: ignore[attr-defined]


def make_producer(settings: KafkaSettings, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent producer (which forces acks=all): a 202 means every in-sync replica has the event. Its lz4 is
    the fast one (``fast_lz4``)."""
    fast_lz4()
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


Record = tuple[str, bytes, bytes]  # (topic, key, value)
KeyValue = tuple[bytes | None, bytes | None]  # a record's key and value (None: a tombstone)
SentBatch = tuple[int, "asyncio.Future[Any]", int]  # a record batch's partition, acknowledgement, record count


async def send_batches(
    producer: AIOKafkaProducer,
    topic: str,
    by_partition: Mapping[int, Iterable[KeyValue]],
    headers: list[tuple[str, bytes]] | None = None,
) -> list[SentBatch]:
    """Hand records to ``producer`` in record batches built here, per partition, in order (a new batch when one is
    full): one future per batch instead of one per record, which ``send`` costs (about 10 µs a record: what the
    derived-facts processor's events and its changelog go out with). For each batch its partition, the future of its
    acknowledgement (the batch's first offset) and its record count."""
    sent: list[SentBatch] = []
    for partition, records in by_partition.items():
        batch = producer.create_batch()
        for key, value in records:
            if batch.append(key=key, value=value, timestamp=None, headers=headers or []) is None:  # full: send, renew
                count = batch.record_count()
                sent.append((partition, await producer.send_batch(batch, topic, partition=partition), count))
                batch = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None, headers=headers or []) is None:
                    raise ValueError(f"a record of {len(value or b'')} bytes does not fit a batch")
        count = batch.record_count()
        if count:
            sent.append((partition, await producer.send_batch(batch, topic, partition=partition), count))
    return sent


async def acknowledged_ends(sent: list[SentBatch]) -> dict[int, int]:
    """Once every batch ``send_batches`` handed over is acknowledged: each partition's end offset after them."""
    ends: dict[int, int] = {}
    for partition, future, count in sent:
        metadata = await future
        ends[partition] = max(ends.get(partition, 0), metadata.offset + count)
    return ends


def event_records(settings: KafkaSettings, events: Iterable[Event]) -> Iterator[Record]:
    """Events as the ingest appends them: to the events topic, keyed by their tenant."""
    for event in events:
        yield settings.topic, event.tenant_id.encode(), encode_event(event)


async def append_records(
    settings: KafkaSettings,
    records: Iterable[Record],
    *,
    per_second: float | None = None,
    in_flight: int = 5_000,
    **producer_options: Any,
) -> list[Any]:
    """Append ``records`` in order with one producer of their own and wait for every ack; each record's
    ``RecordMetadata`` (its offset, and its timestamp: the broker's append time on the events topic). At most
    ``in_flight`` unacknowledged at once; with ``per_second``, a steady stream of that rate, in steps of 50. What the
    benchmarks and the tests fill topics with."""
    step = 50 if per_second is not None else in_flight
    producer = make_producer(settings, **producer_options)
    await producer.start()
    try:
        acked: list[Any] = []
        pending: list[asyncio.Future[Any]] = []
        began = time.monotonic()
        for count, (topic, key, value) in enumerate(records, start=1):
            pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= step:
                acked.extend(await asyncio.gather(*pending))
                pending = []
                if per_second is not None:
                    await asyncio.sleep(max(0.0, began + count / per_second - time.monotonic()))
        acked.extend(await asyncio.gather(*pending))
        return acked
    finally:
        await producer.stop()


def make_consumer(settings: KafkaSettings, *, group_id: str | None, **overrides: Any) -> AIOKafkaConsumer:
    """A consumer that never commits by itself: positions are stored by whoever applies the records."""
    options: dict[str, Any] = {
        **connection_options(settings),
        "client_id": f"{settings.client_id}-consumer",
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        # In a group, JoinGroup may wait for a whole rebalance: aiokafka's 40 s at least. Without one, this timeout
        # bounds how long a fetch to a frozen leader holds the partitions it led (KAFKA_FETCH_REQUEST_TIMEOUT_MS).
        "request_timeout_ms": (
            settings.fetch_request_timeout_ms if group_id is None else max(settings.request_timeout_ms, 40_000)
        ),
        "isolation_level": "read_uncommitted",
    }
    options.update(overrides)
    return AIOKafkaConsumer(**options)


async def seek_to_offsets(
    consumer: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    stored: dict[int, int],
    *,
    fresh_at: Literal["beginning", "end"] = "beginning",
) -> list[TopicPartition]:
    """Place an assigned consumer at the ``stored`` offsets (partition -> next offset), and the partitions without one
    at their beginning (``fresh_at="end"``: their end); returns those. The fresh ones are reset in one call: aiokafka
    waits for each reset it is asked for (about 0.3 s apiece; an edge took 3.4 s to start on 8 partitions)."""
    fresh = [tp for tp in partitions if tp.partition not in stored]
    for tp in partitions:
        if tp.partition in stored:
            consumer.seek(tp, stored[tp.partition])
    if fresh:
        await (consumer.seek_to_end(*fresh) if fresh_at == "end" else consumer.seek_to_beginning(*fresh))
    return fresh


def request_rejoin(consumer: AIOKafkaConsumer) -> None:
    """Have a group consumer rejoin its group: its rebalance listener gives up and takes its partitions again (a
    follower whose subscription is unchanged gets the same ones back without a rebalance of the group). aiokafka has
    no public call for it: its coordinator's."""
    consumer._coordinator.request_rejoin()


def admin_client(settings: KafkaSettings) -> AIOKafkaAdminClient:
    """An admin client (not started) reaching the brokers as every other client does."""
    return AIOKafkaAdminClient(
        **connection_options(settings),
        client_id=f"{settings.client_id}-admin",
        request_timeout_ms=settings.request_timeout_ms,
    )


_UNKNOWN_TOPIC = 3  # UNKNOWN_TOPIC_OR_PARTITION


async def metadata(admin: AIOKafkaAdminClient, topics: list[str] | None) -> dict[str, Any]:
    """The cluster's brokers, and the metadata of ``topics`` (None: of every topic), never creating a missing one.

    aiokafka's ``list_topics`` and ``describe_cluster`` ask for every topic, and ``describe_topics`` lets a broker
    that auto-creates topics create a missing one. A service asks about its own topics only: a cluster of 700 topics
    sent each paced replay's start a metadata answer that took the edge's loop 0.5 s to decode, while every other
    tenant's frames waited."""
    request = MetadataRequest(topics, allow_auto_topic_creation=False)
    answer: dict[str, Any] = (await admin._send_request(request)).to_object()  # no public way without creation
    return answer


async def _exists(admin: AIOKafkaAdminClient, name: str) -> bool:
    (topic,) = (await metadata(admin, [name]))["topics"]
    return bool(topic["error_code"] != _UNKNOWN_TOPIC)


async def replication(admin: AIOKafkaAdminClient, settings: KafkaSettings) -> tuple[int, dict[str, str]]:
    """The replication factor and topic configs for a topic the services create: as configured, else 3 replicas and
    ``min.insync.replicas=2`` on a cluster of three brokers or more (acks=all then survives one broker lost)."""
    factor = settings.replication_factor
    if factor is None:
        brokers = len((await metadata(admin, []))["brokers"])
        factor = 3 if brokers >= 3 else 1
    min_isr = settings.min_insync_replicas or (2 if factor >= 3 else None)
    return factor, {} if min_isr is None else {"min.insync.replicas": str(min_isr)}


async def ensure_topic(settings: KafkaSettings, wait_seconds: float = 30.0) -> list[TopicPartition]:
    """Create the events topic if it is missing (the broker does not auto-create topics).

    Returns its partitions once every one has a leader, so consumers can be assigned right away.
    """
    admin = admin_client(settings)
    await started(admin, settings)
    try:
        if not await _exists(admin, settings.topic):
            factor, durability = await replication(admin, settings)
            configs = {**TOPIC_CONFIG, **durability, "retention.ms": str(int(settings.retention_days * 86_400_000))}
            topic = NewTopic(settings.topic, settings.partitions, factor, topic_configs=configs)
            try:
                await admin.create_topics([topic])
                log.info(
                    "created topic %s with %d partitions on %d replicas", settings.topic, settings.partitions, factor
                )
            except TopicAlreadyExistsError:
                pass
        return await _led_partitions(admin, settings.topic, wait_seconds)
    finally:
        await admin.close()


async def ensure_compacted_topic(settings: KafkaSettings, name: str, wait_seconds: float = 30.0) -> TopicPartition:
    """A one-partition topic that keeps the latest record per key (a table as a log: the devices), created when
    missing; its partition once it has a leader."""
    (partition,) = await ensure_compacted_topic_of(settings, name, 1, wait_seconds=wait_seconds)
    return partition


async def ensure_compacted_topic_of(
    settings: KafkaSettings,
    name: str,
    partitions: int,
    configs: dict[str, str] | None = None,
    wait_seconds: float = 30.0,
) -> list[TopicPartition]:
    """A compacted topic of ``partitions`` partitions (and ``configs`` besides), created when missing; its
    partitions once each has a leader. One that exists with another count is refused: its records would be
    placed wrong."""
    admin = admin_client(settings)
    await started(admin, settings)
    try:
        if not await _exists(admin, name):
            factor, durability = await replication(admin, settings)
            wanted = {"cleanup.policy": "compact", **durability, **(configs or {})}
            topic = NewTopic(name, partitions, factor, topic_configs=wanted)
            try:
                await admin.create_topics([topic])
                log.info("created compacted topic %s with %d partitions", name, partitions)
            except TopicAlreadyExistsError:
                pass
        led = await _led_partitions(admin, name, wait_seconds)
        if len(led) != partitions:
            raise RuntimeError(f"topic {name} has {len(led)} partitions, {partitions} expected")
        return led
    finally:
        await admin.close()


async def topic_partitions(settings: KafkaSettings, wait_seconds: float = 30.0) -> list[TopicPartition]:
    """The partitions of the events topic, which must exist (readers of the history do not create it)."""
    admin = admin_client(settings)
    await started(admin, settings)
    try:
        if not await _exists(admin, settings.topic):
            raise LookupError(f"topic {settings.topic} does not exist")
        return await _led_partitions(admin, settings.topic, wait_seconds)
    finally:
        await admin.close()


async def _led_partitions(admin: AIOKafkaAdminClient, name: str, wait_seconds: float) -> list[TopicPartition]:
    deadline = time.monotonic() + wait_seconds
    while True:
        (described,) = (await metadata(admin, [name]))["topics"]
        partitions = described.get("partitions") or []
        if described["error_code"] == 0 and partitions and all(p["leader"] >= 0 for p in partitions):
            return [TopicPartition(name, p["partition"]) for p in sorted(partitions, key=lambda p: int(p["partition"]))]
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {name!r} has no leader for every partition yet")
        await asyncio.sleep(0.2)
