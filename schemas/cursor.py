"""The opaque position of an event in the topic, handed to clients (ingest answers, WebSocket messages).

A cursor encodes the topic's epoch (``KAFKA_TOPIC_EPOCH``, bumped when the topic is recreated, so that offsets of a
former topic are never taken for offsets of the current one), the partition and the offset. Clients store it and
hand it back; they never take it apart.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import NamedTuple

_FORM = re.compile(r"^(\d{1,9})\.(\d{1,5})\.(-1|\d{1,19})$")  # -1: before the first record


class Cursor(NamedTuple):
    epoch: int
    partition: int
    offset: int

    def encode(self) -> str:
        text = f"{self.epoch}.{self.partition}.{self.offset}".encode()
        return base64.urlsafe_b64encode(text).decode().rstrip("=")


class InvalidCursorError(ValueError):
    pass


def decode_cursor(value: str) -> Cursor:
    try:
        text = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidCursorError("not a locstream cursor") from exc
    match = _FORM.match(text)
    if match is None:
        raise InvalidCursorError("not a locstream cursor")
    return Cursor(*(int(part) for part in match.groups()))
