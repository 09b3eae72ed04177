"""The devices a tenant has registered, as folded from the devices topic, and what a device's fix is called. Pure."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime

from schemas.devices import DeviceEvent, DeviceRegistered

# Namespace of the event ids derived from a device's fixes (uuid5): the apps send no event id and resend after a
# timeout, so a fix's id is a function of what it is, and a resend is recognised as a duplicate.
FIX_NAMESPACE = uuid.UUID("3f9a4c1e-6b7d-5e21-9c0a-7d4b2e8f1a63")


def key_sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def fix_event_id(device_id: str, recorded_at: datetime, latitude: float, longitude: float) -> uuid.UUID:
    """The event id of a device's fix: the same fix sent again gets the same id, another fix another one."""
    return uuid.uuid5(FIX_NAMESPACE, f"{device_id}|{recorded_at.isoformat()}|{latitude!r}|{longitude!r}")


def stop_event_id(device_id: str, recorded_at: datetime, reason: str) -> uuid.UUID:
    """The event id of a device app's saying it stopped tracking (``tracking_stopped``): the same saying sent again
    gets the same id."""
    return uuid.uuid5(FIX_NAMESPACE, f"{device_id}|tracking_stopped|{reason}|{recorded_at.isoformat()}")


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    tenant_id: str
    technician_id: str
    label: str
    registered_at: datetime


class DeviceBook:
    """The active devices: ``apply`` each event of the topic in order; ``by_key`` finds the device of a key."""

    def __init__(self) -> None:
        self._by_hash: dict[str, Device] = {}
        self._hash_of: dict[str, str] = {}  # device id -> its key's hash

    def apply(self, event: DeviceEvent) -> None:
        old = self._hash_of.pop(event.device_id, None)
        if old is not None:
            self._by_hash.pop(old, None)
        if isinstance(event, DeviceRegistered):
            device = Device(event.device_id, event.tenant_id, event.technician_id, event.label, event.at)
            self._by_hash[event.key_sha256] = device
            self._hash_of[event.device_id] = event.key_sha256

    def by_key(self, key: str) -> Device | None:
        hashed = key_sha256(key)
        device = self._by_hash.get(hashed)
        # the dict found it by equal hashes; compare once more in constant time all the same
        return device if device is not None and hmac.compare_digest(self._hash_of[device.device_id], hashed) else None

    def of_tenant(self, tenant_id: str) -> list[Device]:
        return sorted((d for d in self._by_hash.values() if d.tenant_id == tenant_id), key=lambda d: d.device_id)

    def find(self, device_id: str) -> Device | None:
        """The active device of that id, whatever its tenant (an operator's command line, never a tenant's API)."""
        hashed = self._hash_of.get(device_id)
        return self._by_hash.get(hashed) if hashed is not None else None

    def get(self, tenant_id: str, device_id: str) -> Device | None:
        hashed = self._hash_of.get(device_id)
        device = self._by_hash.get(hashed) if hashed is not None else None
        return device if device is not None and device.tenant_id == tenant_id else None
