"""A client's frames as the edge reads them (``FrameReader``), made by websockets' own client-side serializer: every
length class, fragments, control frames between fragments, split at every byte; and each violation with its code."""

from __future__ import annotations

import struct

import pytest
from websockets.frames import Frame, Opcode

from ws_edge.framing import (
    MAX_FRAGMENTS,
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    FrameReader,
    FramingError,
    close_frame,
    close_payload,
)

LIMIT = 64 * 1024


def _masked(opcode: Opcode, data: bytes, fin: bool = True) -> bytes:
    return Frame(opcode, data, fin=fin).serialize(mask=True, extensions=[])


def _unmasked(opcode: Opcode, data: bytes) -> bytes:
    return Frame(opcode, data).serialize(mask=False, extensions=[])


def test_messages_of_every_length_class_read_back_whole_or_fed_a_byte_at_a_time() -> None:
    texts = ["", "ping", "é" * 63, "x" * 126, "y" * 65_535, "z" * LIMIT]
    data = b"".join(_masked(Opcode.TEXT, text.encode()) for text in texts) + _masked(Opcode.BINARY, b"\x00\x01")
    expected = [(OP_TEXT, text) for text in texts] + [(OP_BINARY, b"\x00\x01")]
    assert FrameReader(LIMIT).feed(data) == expected
    reader, read = FrameReader(LIMIT), []
    for at in range(0, len(data), 997):  # odd pieces: headers and masks split across reads
        read += reader.feed(data[at : at + 997])
    assert read == expected
    small = b"".join(_masked(Opcode.TEXT, text.encode()) for text in texts[:4])
    reader, read = FrameReader(LIMIT), []
    for at in range(len(small)):
        read += reader.feed(small[at : at + 1])
    assert read == expected[:4]


def test_fragments_are_joined_and_control_frames_between_them_come_in_order() -> None:
    data = (
        _masked(Opcode.TEXT, b"hel", fin=False)
        + _masked(Opcode.PING, b"p1")
        + _masked(Opcode.CONT, b"lo ", fin=False)
        + _masked(Opcode.CONT, "wörld".encode())
    )
    assert FrameReader(LIMIT).feed(data) == [(OP_PING, b"p1"), (OP_TEXT, "hello wörld")]


@pytest.mark.parametrize(
    ("data", "code", "words"),
    [
        (_unmasked(Opcode.TEXT, b"hi"), 1002, "masked"),
        (_masked(Opcode.TEXT, b"\xff\xfe"), 1007, "UTF-8"),
        (_masked(Opcode.TEXT, b"x" * (LIMIT + 1)), 1009, "over"),
        (_masked(Opcode.TEXT, b"x" * 40_000, fin=False) + _masked(Opcode.CONT, b"x" * 40_000), 1009, "over"),
        (_masked(Opcode.CONT, b"x"), 1002, "continuation"),
        (_masked(Opcode.TEXT, b"a", fin=False) + _masked(Opcode.TEXT, b"b"), 1002, "before the last one ended"),
        (bytes((0x09, 0x81)) + b"\x00" * 4 + b"p", 1002, "control frame"),  # a ping without FIN
        (bytes((0x83, 0x80)) + b"\x00" * 4, 1002, "opcode"),
        (bytes((0xC1, 0x80)) + b"\x00" * 4, 1002, "reserved"),
    ],
    ids=[  # the frames' bytes hold random masks: an id of its own keeps each case's name the same in every process
        "unmasked",
        "not UTF-8",
        "too large",
        "too large in fragments",
        "a stray continuation",
        "a message before the last one ended",
        "a control frame in pieces",
        "an unknown opcode",
        "reserved bits",
    ],
)
def test_a_violation_is_refused_with_its_close_code(data: bytes, code: int, words: str) -> None:
    with pytest.raises(FramingError) as refused:
        FrameReader(LIMIT).feed(data)
    assert refused.value.code == code and words in refused.value.reason


def test_an_oversized_message_is_refused_from_its_header_before_its_payload_comes() -> None:
    header = bytes((0x81, 0x80 | 127)) + struct.pack("!Q", 1 << 40) + b"\x00" * 4  # claims a terabyte
    with pytest.raises(FramingError) as refused:
        FrameReader(LIMIT).feed(header)
    assert refused.value.code == 1009


def test_close_frames_both_ways() -> None:
    assert close_payload(b"") == (1005, "")
    assert close_payload(struct.pack("!H", 1000) + b"bye") == (1000, "bye")
    for bad in (b"\x03", struct.pack("!H", 1005), struct.pack("!H", 999), struct.pack("!H", 2999)):
        with pytest.raises(FramingError):
            close_payload(bad)
    long_reason = "ü" * 200  # cut to fit a control frame, on a character boundary
    sent = close_frame(4008, long_reason)
    assert sent[0] == 0x80 | OP_CLOSE and len(sent) - 2 <= 125
    code, reason = close_payload(sent[2:])
    assert code == 4008 and reason and set(reason) == {"ü"}


EMPTY_CONTINUATION = b"\x00\x80\x00\x00\x00\x00"  # the attack's 6 bytes: FIN=0, continuation, masked, empty


def test_a_flood_of_empty_continuation_frames_is_refused_and_every_frame_is_counted() -> None:
    reader = FrameReader(LIMIT)
    assert reader.feed(_masked(Opcode.TEXT, b"x", fin=False) + EMPTY_CONTINUATION * (MAX_FRAGMENTS - 2)) == []
    assert reader.frames == MAX_FRAGMENTS - 1  # counted though no message came of them
    with pytest.raises(FramingError) as refused:
        reader.feed(EMPTY_CONTINUATION * 2)
    assert refused.value.code == 1009 and "frames" in refused.value.reason
    pinged = FrameReader(LIMIT)  # pings between the empty continuations: still one message's fragments
    flood = _masked(Opcode.TEXT, b"x", fin=False) + (EMPTY_CONTINUATION + _masked(Opcode.PING, b"")) * MAX_FRAGMENTS
    with pytest.raises(FramingError):
        pinged.feed(flood)


def test_a_message_in_many_fragments_within_the_cap_reads_whole() -> None:
    parts = [_masked(Opcode.TEXT, b"a", fin=False)]
    parts += [_masked(Opcode.CONT, b"b", fin=False)] * (MAX_FRAGMENTS - 2) + [_masked(Opcode.CONT, b"c")]
    reader = FrameReader(LIMIT)
    assert reader.feed(b"".join(parts)) == [(OP_TEXT, "a" + "b" * (MAX_FRAGMENTS - 2) + "c")]
    assert reader.frames == MAX_FRAGMENTS


def test_once_discarding_data_frames_are_skipped_and_only_control_frames_come_out() -> None:
    reader = FrameReader(LIMIT)
    reader.feed(_masked(Opcode.TEXT, b"half", fin=False))
    reader.discarding = True  # the connection's close was decided
    data = EMPTY_CONTINUATION * 10_000 + _masked(Opcode.TEXT, b"x" * 1000) + _masked(Opcode.CLOSE, b"\x03\xe8")
    assert reader.feed(data) == [(OP_CLOSE, b"\x03\xe8")]
    assert reader.frames == 1 + 10_000 + 2
