"""Device events on the compacted topic ``devices.v1`` (key = device id, value = JSON): a device is a phone or a
gateway running a tracking app, sending for one technician of one tenant with a key of its own.

Only the key's SHA-256 is ever written; the key itself is shown once, to whoever registered the device. Compaction
keeps the latest event per device, so a revocation replaces the registration and the topic stays the size of the
fleet.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Final

import msgspec
from msgspec import Meta, Struct

from schemas.events import LIMITS, AwareDatetime

Identifier = Annotated[str, Meta(**LIMITS["identifier"])]


class _DeviceEvent(Struct, frozen=True, forbid_unknown_fields=True, gc=False, kw_only=True, tag_field="type"):
    device_id: Identifier
    tenant_id: Identifier
    at: AwareDatetime


class DeviceRegistered(_DeviceEvent, frozen=True, gc=False, tag="device_registered"):
    type: ClassVar[str] = "device_registered"
    technician_id: Identifier
    key_sha256: Annotated[str, Meta(pattern="^[0-9a-f]{64}$")]
    label: Annotated[str, Meta(max_length=200)] = ""


class DeviceRevoked(_DeviceEvent, frozen=True, gc=False, tag="device_revoked"):
    type: ClassVar[str] = "device_revoked"


DeviceEvent = DeviceRegistered | DeviceRevoked

_DECODER: Final[msgspec.json.Decoder[DeviceEvent]] = msgspec.json.Decoder(DeviceEvent)
_ENCODER: Final = msgspec.json.Encoder()


def decode_device_event(value: bytes) -> DeviceEvent:
    """One record of the devices topic; ``msgspec.MsgspecError`` when it is not one."""
    return _DECODER.decode(value)


def encode_device_event(event: DeviceEvent) -> bytes:
    return _ENCODER.encode(event)
