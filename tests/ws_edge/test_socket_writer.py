"""The socket writer with a transport double, byte in, byte out: a frame goes in pieces while the transport takes
them, the rest waits in order, nothing cuts into it, and a drained transport gets what waited."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from ws_edge.socket_writer import SocketWriter
from ws_edge.wire import WRITE_PIECE


class _Transport:
    """Takes every write; full (the writer paused) once ``room`` bytes were written since it last drained."""

    def __init__(self, writer: SocketWriter, room: int) -> None:
        self.writer, self.room, self.taken, self.since_drained, self.closing = writer, room, bytearray(), 0, False

    def write(self, data: Any) -> None:
        self.taken += bytes(data)
        self.since_drained += len(data)
        if self.since_drained >= self.room:
            self.writer.pause_writing()

    def is_closing(self) -> bool:
        return self.closing

    def drain(self) -> bool:
        self.since_drained = 0
        return self.writer.drain_backlog()


def _writer(room: int) -> tuple[SocketWriter, _Transport]:
    writer = SocketWriter()
    transport = _Transport(writer, room)
    writer.transport = cast(asyncio.Transport, transport)
    return writer, transport


def test_a_small_frame_goes_whole_and_room_is_left() -> None:
    writer, transport = _writer(room=10 * WRITE_PIECE)
    assert writer.write(b"hello") is True
    assert bytes(transport.taken) == b"hello" and not writer.writing_blocked


def test_a_big_frame_goes_in_pieces_until_full_then_the_rest_and_what_follows_wait_in_order() -> None:
    writer, transport = _writer(room=2 * WRITE_PIECE)
    big = bytes(range(256)) * (5 * WRITE_PIECE // 256)  # five pieces
    assert writer.write(big) is False
    assert len(transport.taken) == 2 * WRITE_PIECE and writer.transport_full and writer.has_backlog
    assert writer.write(b"PONG") is False  # a control frame waits behind the frame, never cuts into it
    assert len(transport.taken) == 2 * WRITE_PIECE
    assert transport.drain() is False  # two more pieces, then full again
    assert len(transport.taken) == 4 * WRITE_PIECE
    assert transport.drain() is True  # the last piece and the pong: all went, room left
    assert bytes(transport.taken) == big + b"PONG" and not writer.writing_blocked


def test_nothing_is_written_to_a_closing_transport_and_a_forgotten_backlog_is_gone() -> None:
    writer, transport = _writer(room=WRITE_PIECE)
    writer.write(b"x" * (3 * WRITE_PIECE))
    writer.forget_backlog()
    assert not writer.has_backlog
    transport.closing = True
    assert writer.write(b"late") is False and b"late" not in transport.taken
