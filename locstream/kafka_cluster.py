"""What a Kafka cluster looks like to its operator: the brokers, the KRaft quorum's leader (the active controller)
and voters, and the partitions with fewer in-sync replicas than replicas.

aiokafka has no DescribeQuorum call, so this module declares the request (API key 55, version 0, from Kafka's
``DescribeQuorumRequest.json``) with aiokafka's own protocol types. A broker forwards it to the active controller,
so any broker answers it, as ``kafka-metadata-quorum.sh --bootstrap-server`` relies on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, NodeNotReadyError, RequestTimedOutError
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import CompactArray, CompactString, Int16, Int32, Int64, Schema, TaggedFields

from locstream.kafka import metadata

T = TypeVar("T")
METADATA_TOPIC = "__cluster_metadata"  # KRaft's own log: its partition 0 is the quorum


class DescribeQuorumResponse_v0(Response):  # type: ignore[misc]  # aiokafka ships no type hints
    API_KEY = 55
    API_VERSION = 0
    _REPLICA = CompactArray(("replica_id", Int32), ("log_end_offset", Int64), ("tags", TaggedFields))
    SCHEMA = Schema(
        ("error_code", Int16),
        (
            "topics",
            CompactArray(
                ("topic_name", CompactString("utf-8")),
                (
                    "partitions",
                    CompactArray(
                        ("partition_index", Int32),
                        ("error_code", Int16),
                        ("leader_id", Int32),
                        ("leader_epoch", Int32),
                        ("high_watermark", Int64),
                        ("current_voters", _REPLICA),
                        ("observers", _REPLICA),
                        ("tags", TaggedFields),
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class DescribeQuorumRequest_v0(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 55
    API_VERSION = 0
    RESPONSE_TYPE = DescribeQuorumResponse_v0
    SCHEMA = Schema(
        (
            "topics",
            CompactArray(
                ("topic_name", CompactString("utf-8")),
                ("partitions", CompactArray(("partition_index", Int32), ("tags", TaggedFields))),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class DescribeQuorumRequest(Request[DescribeQuorumRequest_v0]):  # type: ignore[misc]
    API_KEY = 55

    def build(self, request_struct_class: type[DescribeQuorumRequest_v0]) -> DescribeQuorumRequest_v0:
        return request_struct_class([(METADATA_TOPIC, [(0, {})], {})], {})


@dataclass(frozen=True)
class Quorum:
    """The KRaft quorum: its leader is the active controller; voters are the controllers that elect it."""

    leader_id: int
    leader_epoch: int
    voters: tuple[int, ...]


@dataclass(frozen=True)
class PartitionReplicas:
    topic: str
    partition: int
    leader: int  # -1: offline, nobody can write or read it
    replicas: tuple[int, ...]
    isr: tuple[int, ...]

    @property
    def under_replicated(self) -> bool:
        return len(self.isr) < len(self.replicas)


@dataclass(frozen=True)
class ClusterView:
    brokers: tuple[int, ...]  # the brokers the metadata lists: those alive and not fenced
    quorum: Quorum | None
    partitions: tuple[PartitionReplicas, ...]

    @property
    def under_replicated(self) -> list[PartitionReplicas]:
        return [p for p in self.partitions if p.under_replicated]

    @property
    def offline(self) -> list[PartitionReplicas]:
        return [p for p in self.partitions if p.leader < 0]


def quorum_from(response: dict[str, Any]) -> Quorum:
    """The quorum from a DescribeQuorum response (as ``to_object()`` gives it); ValueError on an error code."""
    if response["error_code"] != 0:
        raise ValueError(f"DescribeQuorum failed with error code {response['error_code']}")
    (topic,) = response["topics"]
    (partition,) = topic["partitions"]
    if partition["error_code"] != 0:
        raise ValueError(f"DescribeQuorum failed with error code {partition['error_code']}")
    voters = tuple(sorted(v["replica_id"] for v in partition["current_voters"]))
    return Quorum(partition["leader_id"], partition["leader_epoch"], voters)


def partitions_from(topics: list[dict[str, Any]]) -> tuple[PartitionReplicas, ...]:
    """Every partition of the described topics (internal ones included), in topic and partition order."""
    found = [
        PartitionReplicas(topic["topic"], p["partition"], p["leader"], tuple(p["replicas"]), tuple(p["isr"]))
        for topic in topics
        if topic["error_code"] == 0
        for p in topic["partitions"]
    ]
    return tuple(sorted(found, key=lambda p: (p.topic, p.partition)))


async def describe(admin: AIOKafkaAdminClient, topics: list[str] | None = None, attempts: int = 4) -> ClusterView:
    """The cluster as ``admin`` (started) sees it: ``topics`` only, or every topic.

    aiokafka's admin asks a random broker of its metadata, which still lists a broker that just died: a call that
    finds its node down is asked again (another random pick) up to ``attempts`` times.
    """
    cluster = await _again(lambda: metadata(admin, topics), attempts)
    try:
        answer = await _again(lambda: admin._send_request(DescribeQuorumRequest()), attempts)  # no public way
        quorum: Quorum | None = quorum_from(answer.to_object())
    except Exception:  # an old broker, or no quorum right now: the rest still tells a lot
        quorum = None
    brokers = tuple(sorted(b["node_id"] for b in cluster["brokers"]))
    return ClusterView(brokers, quorum, partitions_from(cluster["topics"]))


async def describe_at(bootstrap: str, topics: list[str] | None = None, seconds: float = 15.0) -> ClusterView:
    """The cluster at ``bootstrap`` (plaintext), through whichever node answers within ``seconds``: what the local
    cluster's ``status`` and the fault suite look at."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000, client_id="locstream-admin")
    try:
        async with asyncio.timeout(seconds):
            await admin.start()
            return await describe(admin, topics)
    finally:
        await admin.close()


async def _again(call: Callable[[], Awaitable[T]], attempts: int) -> T:
    for _ in range(attempts - 1):
        try:
            return await call()
        except (NodeNotReadyError, KafkaConnectionError, RequestTimedOutError):
            continue
    return await call()
