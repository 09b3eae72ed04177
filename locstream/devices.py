"""The devices an ingest process knows, from the devices topic (``schemas/devices.py``), followed from its
beginning by every process (``locstream.compacted_topic``): a registration or a revocation made through any process
reaches all of them within a fetch, and no database is needed. ``register`` and ``revoke`` return once this
process has applied their event, so whoever registered a device can use it at once through the same process.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime

from domain.devices import Device, DeviceBook, key_sha256
from locstream.compacted_topic import Registry
from locstream.settings import KafkaSettings
from schemas.devices import DeviceEvent, DeviceRegistered, DeviceRevoked, decode_device_event, encode_device_event

KEY_BYTES = 24  # 192 random bits, 32 characters of base64url: typed once into an app, or scanned


class DeviceRegistry(Registry[DeviceEvent]):
    """The devices topic followed (``locstream.compacted_topic``) into a ``DeviceBook``."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.book = DeviceBook()
        super().__init__(kafka, kafka.devices_topic, decode_device_event)

    def fold(self, event: DeviceEvent, value: bytes) -> None:
        self.book.apply(event)

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
        await self.table.append(device_id.encode(), value)
