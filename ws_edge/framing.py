"""WebSocket framing (RFC 6455, section 5): the edge's outbound frames, and ``FrameReader`` for a client's. Pure.

A server's frames are not masked, so a frame's bytes are the same for every client that gets it: the edge frames a
``location_update`` once per tenant and an ``initial_state`` once per map version (``ws_edge/messages.py``), and
writes the same bytes to every socket (``ws_edge/wire.py``).

A client's frames are masked; ``FrameReader`` takes the bytes as they come and gives whole messages (fragments
joined, inflated when the connection negotiated permessage-deflate) and control frames in order, or
``FramingError`` with the close code a violation earns: 1002 for a broken frame, 1007 for text that is not UTF-8,
1009 for a message over the limit (refused from its header before its payload is read, or while it inflates).

permessage-deflate (RFC 7692) is negotiated without context takeover either way (``locstream/websocket_upgrade.py``):
each compressed message stands alone, so the edge compresses a big frame once and writes the same bytes to every
client that negotiated it (``ws_edge/initial_state.py``), keeps no compressor per connection, and inflates each
client message with a decompressor of its own that lives for that message only.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

from websockets.frames import apply_mask  # type: ignore[attr-defined]  # C, from websockets' speedups

_TEXT = 0x81  # FIN and the text opcode
_DEFLATED_TEXT = 0xC1  # FIN, RSV1 (compressed: RFC 7692, 6) and the text opcode
_DEFLATE_TAIL = b"\x00\x00\xff\xff"  # what a sync flush ends with; left off the wire (RFC 7692, 7.2.1)
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
CLOSE_PROTOCOL_ERROR = 1002
_NO_STATUS = 1005  # a close frame without a code (never sent on the wire)


class FramingError(Exception):
    """A client's bytes broke RFC 6455 or a limit: close with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


MAX_FRAGMENTS = 64  # frames of one message; more: 1009. Browsers send a message whole; a flood of empty
# continuation frames (6 bytes each) would otherwise grow a list without growing the message's size.


class FrameReader:
    """One connection's inbound frames. ``feed`` returns ``(opcode, payload)`` for each complete message (text as
    ``str``, binary as ``bytes``) and control frame (``bytes``), in order. Holds only what is yet incomplete.

    ``frames`` counts every frame read, fragments and control frames alike, for the connection's rate. Once
    ``discarding`` (the connection's close is decided) data frames are skipped unread and only control frames come
    out: a closing peer can make the reader hold nothing."""

    __slots__ = (
        "_fragments",
        "_fragments_opcode",
        "_fragments_size",
        "_partial",
        "discarding",
        "frames",
        "inflate",
        "max_size",
    )

    def __init__(self, max_size: int, inflate: bool = False) -> None:
        self.max_size = max_size
        self.inflate = inflate  # permessage-deflate was negotiated: RSV1 marks a compressed message
        self.frames = 0
        self.discarding = False
        self._partial = b""  # the start of a frame whose end has not come yet
        self._fragments: list[bytes] | None = None  # a fragmented message so far
        self._fragments_opcode = 0
        self._fragments_size = 0

    def feed(self, data: bytes) -> list[tuple[int, str | bytes]]:
        buffer = self._partial + data if self._partial else data
        messages: list[tuple[int, str | bytes]] = []
        at, end = 0, len(buffer)
        while end - at >= 2:
            first, second = buffer[at], buffer[at + 1]
            opcode, size, header = first & 0x0F, second & 0x7F, 2
            if first & 0x70 and not (
                first & 0x70 == 0x40 and self.inflate and opcode in (OP_TEXT, OP_BINARY)
            ):  # RSV1 only, only on a message's first frame, only with permessage-deflate
                raise FramingError(CLOSE_PROTOCOL_ERROR, "reserved bits set without an extension")
            if not second & 0x80:
                raise FramingError(CLOSE_PROTOCOL_ERROR, "a client's frames must be masked")
            if opcode >= OP_CLOSE:
                if not first & 0x80 or size > 125:
                    raise FramingError(CLOSE_PROTOCOL_ERROR, "a control frame must be whole and at most 125 bytes")
                if opcode > OP_PONG:
                    raise FramingError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
            elif opcode > OP_BINARY:
                raise FramingError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
            if size == 126:
                if end - at < 4:
                    break
                size, header = struct.unpack_from("!H", buffer, at + 2)[0], 4
            elif size == 127:
                if end - at < 10:
                    break
                size, header = struct.unpack_from("!Q", buffer, at + 2)[0], 10
            if size + (self._fragments_size if opcode == OP_CONTINUATION else 0) > self.max_size:
                raise FramingError(1009, f"a message over {self.max_size} bytes")
            if end - at < header + 4 + size:
                break
            self.frames += 1
            start = at + header + 4
            if self.discarding and opcode < OP_CLOSE:
                at = start + size
                continue
            mask = buffer[at + header : at + header + 4]
            payload = apply_mask(buffer[start : start + size], mask) if size else b""
            at = start + size
            message = self._message(first & 0x80 != 0, opcode | (first & 0x40), payload)
            if message is not None:
                messages.append(message)
        self._partial = buffer[at:] if at < end else b""
        return messages

    def _message(self, fin: bool, opcode: int, payload: bytes) -> tuple[int, str | bytes] | None:
        """``opcode`` carries RSV1 (0x40) for a compressed message's first frame."""
        if opcode >= OP_CLOSE and opcode < 0x40:
            return opcode, payload
        if opcode == OP_CONTINUATION:
            if self._fragments is None:
                raise FramingError(CLOSE_PROTOCOL_ERROR, "a continuation frame without a message to continue")
            if len(self._fragments) >= MAX_FRAGMENTS:
                raise FramingError(1009, f"a message in more than {MAX_FRAGMENTS} frames")
            self._fragments.append(payload)
            self._fragments_size += len(payload)
            if not fin:
                return None
            opcode, payload = self._fragments_opcode, b"".join(self._fragments)
            self._fragments, self._fragments_size = None, 0
        elif self._fragments is not None:
            raise FramingError(CLOSE_PROTOCOL_ERROR, "a new message before the last one ended")
        elif not fin:
            self._fragments, self._fragments_opcode, self._fragments_size = [payload], opcode, len(payload)
            return None
        if opcode & 0x40:
            opcode, payload = opcode & 0x0F, self._inflated(payload)
        if opcode == OP_BINARY:
            return opcode, payload
        try:
            return opcode, payload.decode()
        except UnicodeDecodeError:
            raise FramingError(1007, "a text message that is not UTF-8") from None

    def _inflated(self, payload: bytes) -> bytes:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)  # no context takeover: each message alone
        try:
            data = inflater.decompress(payload + _DEFLATE_TAIL, self.max_size + 1)
        except zlib.error:
            raise FramingError(1007, "a compressed message that does not inflate") from None
        if len(data) > self.max_size:
            raise FramingError(1009, f"a message over {self.max_size} bytes once inflated")
        return data


def close_payload(payload: bytes) -> tuple[int, str]:
    """The code and reason of a client's close frame (1005: none given); ``FramingError`` for a malformed one."""
    if not payload:
        return _NO_STATUS, ""
    if len(payload) == 1:
        raise FramingError(CLOSE_PROTOCOL_ERROR, "a close frame of one byte")
    code = struct.unpack_from("!H", payload)[0]
    if not ((1000 <= code <= 1014 and code not in (1004, 1005, 1006)) or 3000 <= code <= 4999):
        raise FramingError(CLOSE_PROTOCOL_ERROR, f"close code {code} is not one a peer may send")
    try:
        return code, payload[2:].decode()
    except UnicodeDecodeError:
        raise FramingError(1007, "a close reason that is not UTF-8") from None


def control_frame(opcode: int, payload: bytes = b"") -> bytes:
    """An unmasked control frame (``payload`` at most 125 bytes)."""
    return bytes((0x80 | opcode, len(payload))) + payload


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame; the reason is cut to fit the 125 bytes of a control frame, on a character boundary."""
    encoded = reason.encode()[:123].decode(errors="ignore").encode()
    return control_frame(OP_CLOSE, struct.pack("!H", code) + encoded)


def text_frame(payload: bytes) -> bytes:
    """``payload`` as an unmasked, unfragmented WebSocket text frame."""
    return frame_header(len(payload)) + payload


def frame_header(size: int, first: int = _TEXT) -> bytes:
    """The header of an unmasked frame of ``size`` bytes (``first``: FIN, RSV and opcode)."""
    if size < 126:
        return bytes((first, size))
    if size < 1 << 16:
        return struct.pack("!BBH", first, 126, size)
    return struct.pack("!BBQ", first, 127, size)


def header_size(frame: bytes | memoryview) -> int:
    """How many bytes of ``frame`` (unmasked) are its header."""
    size = frame[1] & 0x7F
    return 2 if size < 126 else 4 if size == 126 else 10


class Deflater:
    """A text message compressed for permessage-deflate without context takeover, fed in pieces (so that a big one
    need not hold the event loop); ``frame`` gives the compressed message as one frame with RSV1 set."""

    __slots__ = ("_compressor", "_parts")

    def __init__(self, level: int = 6) -> None:
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
        self._parts: list[bytes] = []

    def feed(self, data: bytes | memoryview) -> None:
        self._parts.append(self._compressor.compress(data))

    def frame(self) -> bytes:
        tail = self._compressor.flush(zlib.Z_SYNC_FLUSH)
        body = b"".join([*self._parts, tail])
        body = body[: -len(_DEFLATE_TAIL)] if body.endswith(_DEFLATE_TAIL) else body
        self._parts = []
        return frame_header(len(body), _DEFLATED_TEXT) + body


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
