"""Reading one tenant's history from the topic by append time.

A tenant's events are all in one partition (key = tenant id), shared with other tenants. ``span`` turns a time
range into offsets with ``offsets_for_times`` (the first record appended at or after each bound; the topic's
``LogAppendTime`` makes that exact), ``batches`` reads that run of offsets and keeps only the tenant's records,
by their key, without decoding the others. An end bound later than the last record is the end of the partition
as it is when the span is taken: a read always finishes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType

from aiokafka import TopicPartition

from domain.partitioning import tenant_partition
from locstream.kafka import make_consumer, topic_partitions
from locstream.settings import KafkaSettings
from replay.history_record import HistoryRecord, RecordIdentity, identities
from replay.time_range import to_ms

MAX_RECORDS_PER_READ = 10_000
EXPORT_FETCH_BYTES = 8 * 2**20  # an export reads as fast as it writes: big fetches
PACED_FETCH_BYTES = 2**20  # a paced replay holds its fetch while the clock runs: one per session
PACED_RECORDS_PER_READ = 1_000  # dozens of replays share the edge's loop with the live maps: small steps


@dataclass(frozen=True)
class Span:
    """The offsets ``[first, end)`` of a partition that a time range covers."""

    partition: TopicPartition
    first: int
    end: int

    @property
    def size(self) -> int:
        return max(0, self.end - self.first)


class HistoryReader:
    """A consumer without a group, for one read of the history: ``start()``/``stop()`` or ``async with``. One
    ``batches`` per reader: assigning and seeking again could hand back records the consumer had fetched ahead."""

    def __init__(
        self, kafka: KafkaSettings, fetch_bytes: int = EXPORT_FETCH_BYTES, records_per_read: int = MAX_RECORDS_PER_READ
    ) -> None:
        self.kafka = kafka
        self.records_per_read = records_per_read  # what one step of ``batches`` builds without a turn of the loop
        # Bulk reads of one partition, maybe from far away: not the live feed's short request timeout. What a fetch
        # brings is held until it is read: ``fetch_bytes`` is most of a reader's memory.
        self._consumer = make_consumer(
            kafka,
            group_id=None,
            max_partition_fetch_bytes=fetch_bytes,
            fetch_max_bytes=fetch_bytes,
            request_timeout_ms=max(kafka.request_timeout_ms, 30_000),
        )
        self._partition_count: int | None = None

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    @property
    def closed(self) -> bool:
        """Its consumer was stopped (or never started): it holds no connection to the brokers."""
        return bool(self._consumer._closed)

    async def __aenter__(self) -> HistoryReader:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.stop()

    async def partition_of(self, tenant_id: str) -> TopicPartition:
        if self._partition_count is None:
            self._partition_count = len(await topic_partitions(self.kafka))
        return TopicPartition(self.kafka.topic, tenant_partition(tenant_id, self._partition_count))

    async def span(self, tenant_id: str, start: datetime | None, end: datetime) -> Span:
        """The offsets of the records appended in ``[start, end)`` (``start`` None: from the oldest one kept)."""
        tp = await self.partition_of(tenant_id)
        oldest = (await self._consumer.beginning_offsets([tp]))[tp]
        latest = (await self._consumer.end_offsets([tp]))[tp]
        first = oldest
        if start is not None:
            found = (await self._consumer.offsets_for_times({tp: to_ms(start)}))[tp]
            first = latest if found is None else max(found.offset, oldest)
        found = (await self._consumer.offsets_for_times({tp: to_ms(end)}))[tp]
        return Span(tp, first, latest if found is None else min(found.offset, latest))

    async def batches(self, span: Span, tenant_id: str) -> AsyncIterator[list[HistoryRecord]]:
        """The tenant's records of ``span``, in offset order, a fetch at a time."""
        if span.size == 0:
            return
        tp, key = span.partition, tenant_id.encode()
        self._consumer.assign([tp])
        self._consumer.seek(tp, span.first)
        position = span.first
        while position < span.end:
            fetched = await self._consumer.getmany(tp, timeout_ms=1_000, max_records=self.records_per_read)
            records = fetched.get(tp, [])
            if not records:
                if await self._consumer.position(tp) >= span.end:  # the rest were not records (markers)
                    return
                continue
            position = records[-1].offset + 1
            mine = [record for record in records if record.key == key and record.offset < span.end]
            known: list[RecordIdentity] | list[None] = identities([record.value for record in mine]) or [None] * len(
                mine
            )
            yield [
                HistoryRecord(record.value, tp.partition, record.offset, record.timestamp, identity)
                for record, identity in zip(mine, known, strict=True)
            ]


class Deduplicated:
    """Drops the events whose identity was seen before in this read: a retried fix appears once.

    What it remembers is each identity's 64-bit hash, about 60 bytes an event instead of about 250 for the identity
    itself: two of a million events share a hash with a chance of about 3 in 100 million (the birthday bound), and
    that would drop one of them from this one export, never from the log."""

    def __init__(self, technicians: Collection[str] | None = None) -> None:
        self.technicians = frozenset(technicians) if technicians else None
        self.duplicates = 0
        self._seen: set[int] = set()

    def keep(self, record: HistoryRecord) -> bool:
        identity = record.identity()
        if self.technicians is not None and identity.technician_id not in self.technicians:
            return False
        seen, key = self._seen, hash(identity)
        if key in seen:
            self.duplicates += 1
            return False
        seen.add(key)
        return True
