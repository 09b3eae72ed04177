"""The services ask the cluster about their own topics only: a shared cluster may hold thousands, and an answer
about every one of them cost a paced replay's start 25 ms of the edge's loop (docs/benchmarks.md, "Noisy
neighbours")."""

from __future__ import annotations

import pytest

from locstream.kafka import admin_client, ensure_topic, metadata, topic_partitions
from locstream.settings import KafkaSettings

pytestmark = pytest.mark.integration


async def test_metadata_is_of_the_named_topics_only_and_a_missing_one_is_said_missing(kafka: KafkaSettings) -> None:
    await ensure_topic(kafka)
    others = [kafka.model_copy(update={"topic": f"{kafka.topic}.other-{i}"}) for i in range(3)]
    for other in others:
        await ensure_topic(other)
    missing = f"{kafka.topic}.missing"
    admin = admin_client(kafka)
    await admin.start()
    try:
        everything = await metadata(admin, None)
        named = await metadata(admin, [kafka.topic, missing])
        brokers_only = await metadata(admin, [])
    finally:
        await admin.close()
    assert {kafka.topic, *(o.topic for o in others)} <= {t["topic"] for t in everything["topics"]}
    assert {t["topic"]: t["error_code"] for t in named["topics"]} == {kafka.topic: 0, missing: 3}  # unknown topic
    assert brokers_only["topics"] == [] and len(brokers_only["brokers"]) >= 1
    with pytest.raises(LookupError, match="does not exist"):
        await topic_partitions(kafka.model_copy(update={"topic": missing}))
    assert [tp.partition for tp in await topic_partitions(kafka)] == list(range(kafka.partitions))
