"""The devices an ingest process knows, from the devices topic (``schemas/devices.py``): every process follows the
topic from its beginning with a consumer of its own (no group), so a registration or a revocation made through any
process reaches all of them within a fetch (well under 2 s), and no database is needed.

``register`` and ``revoke`` append an event (acks=all) and wait until this process's own consumer has applied it,
so whoever registered a device can use it at once through the same process.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiokafka import TopicPartition

from domain.devices import Device, DeviceBook, key_sha256
from locstream.kafka import ensure_compacted_topic, make_consumer, make_producer
from locstream.lifecycle import cancel_and_wait
from locstream.settings import KafkaSettings
from schemas.devices import DeviceRegistered, DeviceRevoked, decode_device_event, encode_device_event

log = logging.getLogger(__name__)

KEY_BYTES = 24  # 192 random bits, 32 characters of base64url: typed once into an app, or scanned


class DeviceRegistry:
    """Owns the devices topic's consumer and producer: ``start()`` reads the topic to its end, ``stop()`` awaits."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self.book = DeviceBook()
        self.ready = asyncio.Event()
        self._partition: TopicPartition | None = None
        self._consumer: Any = None
        self._producer: Any = None
        self._task: asyncio.Task[None] | None = None
        self._applied = -1  # offset of the last record applied
        self._advanced = asyncio.Event()

    async def start(self) -> None:
        assert self._task is None, "device registry already started"
        self._partition = await ensure_compacted_topic(self.kafka, self.kafka.devices_topic)
        self._consumer = make_consumer(self.kafka, group_id=None, fetch_max_wait_ms=200)
        await self._consumer.start()
        self._consumer.assign([self._partition])
        await self._consumer.seek_to_beginning(self._partition)
        end = (await self._consumer.end_offsets([self._partition]))[self._partition]
        self._producer = make_producer(self.kafka, compression_type=None)
        await self._producer.start()
        self._task = asyncio.create_task(self._follow(), name="device-registry")
        await self._reach(end - 1)
        self.ready.set()
        log.info("device registry: %d records read", end)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        for client in (self._consumer, self._producer):
            if client is not None:
                await client.stop()
        self._consumer = self._producer = None

    async def _follow(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=1_000)
            for records in batches.values():
                for record in records:
                    try:
                        self.book.apply(decode_device_event(record.value))
                    except msgspec.MsgspecError:
                        log.warning("skipping an undecodable devices record at offset %d", record.offset)
                    self._applied = record.offset
            if batches:
                self._advanced.set()
                self._advanced = asyncio.Event()

    async def _reach(self, offset: int) -> None:
        while self._applied < offset:
            await self._advanced.wait()

    def device(self, key: str) -> Device | None:
        """The active device of ``key`` (None: unknown or revoked)."""
        return self.book.by_key(key)

    async def register(self, tenant_id: str, technician_id: str, label: str) -> tuple[Device, str]:
        """A new device and its key (shown once; only its hash is stored)."""
        key = secrets.token_urlsafe(KEY_BYTES)
        device_id = uuid.uuid4().hex[:16]
        event = DeviceRegistered(
            device_id=device_id,
            tenant_id=tenant_id,
            technician_id=technician_id,
            label=label,
            key_sha256=key_sha256(key),
            at=datetime.now(UTC),
        )
        await self._append(device_id, encode_device_event(event))
        device = self.book.get(tenant_id, device_id)
        assert device is not None, "a device this process registered is in its book"
        return device, key

    async def revoke(self, tenant_id: str, device_id: str) -> bool:
        """False when the tenant has no such active device (another tenant's id is the same as none)."""
        if self.book.get(tenant_id, device_id) is None:
            return False
        event = DeviceRevoked(device_id=device_id, tenant_id=tenant_id, at=datetime.now(UTC))
        await self._append(device_id, encode_device_event(event))
        return True

    async def _append(self, device_id: str, value: bytes) -> None:
        metadata = await self._producer.send_and_wait(self.kafka.devices_topic, value, key=device_id.encode())
        async with asyncio.timeout(10):
            await self._reach(metadata.offset)
