"""Records handed to the producer in record batches built by the caller (``send_batches``), what the derived-facts
processor's events and changelog go out with, and the lz4 level every producer compresses them at (``fast_lz4``)."""

from __future__ import annotations

import importlib

import pytest
from aiokafka import TopicPartition
from aiokafka.codec import lz4_decode
from aiokafka.codec import lz4_encode as aiokafka_lz4_encode

from locstream.kafka import (
    LZ4_LEVEL,
    KeyValue,
    acknowledged_ends,
    ensure_topic,
    fast_lz4,
    make_consumer,
    make_producer,
    send_batches,
)
from locstream.settings import KafkaSettings


def test_the_batch_builders_compress_lz4_at_the_fast_level_and_it_decodes_to_the_same_bytes() -> None:
    fast_lz4()
    payload = b"".join(b'{"type":"location_recorded","n":%d,"latitude":6.52%d}' % (i, i) for i in range(2_000))
    for name in ("aiokafka.record.default_records", "aiokafka.record._crecords.default_records"):
        module = importlib.import_module(name)
        compressed = module.lz4_encode(payload)
        assert compressed == aiokafka_lz4_encode(payload, level=LZ4_LEVEL), name
        assert compressed != aiokafka_lz4_encode(payload), f"{name} still at aiokafka's level 9"
        assert lz4_decode(compressed) == payload


@pytest.mark.integration
async def test_records_sent_in_batches_are_read_back_in_order_with_the_ends_their_acks_say(
    kafka: KafkaSettings,
) -> None:
    kafka = kafka.model_copy(update={"partitions": 2, "compression": "lz4"})
    await ensure_topic(kafka)
    # Small batches: 300 records of about 600 bytes fill several of 16 KiB, each its own future.
    records: dict[int, list[KeyValue]] = {
        partition: [(f"k{partition}-{i}".encode(), (b"%d:%d " % (partition, i)) * 100) for i in range(300)]
        for partition in (0, 1)
    }
    records[1].append((b"gone", None))  # a tombstone goes as one
    producer = make_producer(kafka, max_batch_size=16_384)
    await producer.start()
    try:
        sent = await send_batches(producer, kafka.topic, records, [("writer", b"me")])
        ends = await acknowledged_ends(sent)
    finally:
        await producer.stop()
    assert len(sent) > 4 and {partition for partition, _, _ in sent} == {0, 1}
    assert sum(count for _, _, count in sent) == 601
    assert ends == {0: 300, 1: 301}  # a fresh topic: its ends are the counts
    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(kafka.topic, partition) for partition in (0, 1)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        read: dict[int, list[tuple[bytes | None, bytes | None]]] = {0: [], 1: []}
        while sum(map(len, read.values())) < 601:
            for tp, batch in (await consumer.getmany(timeout_ms=5_000)).items():
                for record in batch:
                    assert record.headers == (("writer", b"me"),)
                    read[tp.partition].append((record.key, record.value))
    finally:
        await consumer.stop()
    assert read == records
