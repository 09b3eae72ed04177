"""WebSocket framing of the edge's outbound text (RFC 6455, section 5.2). Pure.

A server's frames are not masked, so a frame's bytes are the same for every client that gets it: the edge frames a
``location_update`` once per tenant and an ``initial_state`` once per map version (``ws_edge/messages.py``), and
writes the same bytes to every socket (``ws_edge/wire.py``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

_TEXT = 0x81  # FIN and the text opcode


def text_frame(payload: bytes) -> bytes:
    """``payload`` as an unmasked, unfragmented WebSocket text frame."""
    size = len(payload)
    if size < 126:
        return bytes((_TEXT, size)) + payload
    if size < 1 << 16:
        return struct.pack("!BBH", _TEXT, 126, size) + payload
    return struct.pack("!BBQ", _TEXT, 127, size) + payload


def payloads(data: bytes) -> Iterator[bytes]:
    """The payloads of the frames ``text_frame`` wrote one after another into ``data``."""
    at = 0
    while at < len(data):
        size, header = data[at + 1], 2
        if size == 126:
            size, header = struct.unpack_from("!H", data, at + 2)[0], 4
        elif size == 127:
            size, header = struct.unpack_from("!Q", data, at + 2)[0], 10
        yield data[at + header : at + header + size]
        at += header + size
