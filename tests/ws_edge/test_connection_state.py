"""The connection's state without a socket: pings and the dead peer, the edge's close, the client's close answered,
echoed, refused or dropped."""

from __future__ import annotations

import struct

import pytest

from ws_edge.connection_state import Liveness, PeerClose, Phase, edge_close, peer_close
from ws_edge.framing import OP_CLOSE, close_frame, control_frame


def test_a_pong_before_its_deadline_keeps_the_peer_and_the_next_ping_keeps_the_interval() -> None:
    liveness = Liveness(interval=20.0, timeout=5.0)
    assert liveness.ping_sent() == 5.0
    liveness.pong_received()
    assert liveness.pong_due() == 15.0  # pings stay 20 s apart
    assert liveness.ping_sent() == 5.0
    assert liveness.pong_due() is None  # no pong this time: the peer is taken for dead


def test_a_timeout_longer_than_the_interval_pings_again_at_once() -> None:
    liveness = Liveness(interval=1.0, timeout=3.0)
    liveness.ping_sent()
    liveness.pong_received()
    assert liveness.pong_due() == 0.0


@pytest.mark.parametrize("phase", [Phase.OPENING, Phase.LIVE])
def test_the_edge_closes_an_open_connection_once_with_its_reason_cut_to_fit(phase: Phase) -> None:
    frame = edge_close(phase, 4001, "x" * 300)
    assert frame == close_frame(4001, "x" * 120)
    assert len(frame) <= 2 + 125


@pytest.mark.parametrize("phase", [Phase.CLOSING, Phase.GONE])
def test_nothing_follows_a_close_under_way_or_a_connection_gone(phase: Phase) -> None:
    assert edge_close(phase, 1000, "bye") is None


def test_a_client_closing_first_gets_its_code_echoed() -> None:
    payload = struct.pack("!H", 4100) + b"going home"
    assert peer_close(Phase.LIVE, payload, has_backlog=False) == PeerClose(4100, control_frame(OP_CLOSE, payload[:2]))


def test_a_close_frame_without_a_code_is_1005_and_answered_empty_handed() -> None:
    assert peer_close(Phase.OPENING, b"", has_backlog=False) == PeerClose(1005, control_frame(OP_CLOSE, b""))


def test_a_client_answering_the_edges_close_gets_no_answer() -> None:
    assert peer_close(Phase.CLOSING, struct.pack("!H", 1000), has_backlog=False) == PeerClose(1000, None)


def test_a_close_behind_the_rest_of_a_frame_drops_the_connection() -> None:
    assert peer_close(Phase.LIVE, struct.pack("!H", 1000), has_backlog=True) == PeerClose(1000, None, drop=True)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\x03", 1002),  # one byte: no code fits
        (struct.pack("!H", 1005), 1002),  # a code only an endpoint may report, never send
        (struct.pack("!H", 2999), 1002),  # reserved
        (struct.pack("!H", 1000) + b"\xff\xfe", 1007),  # a reason that is not UTF-8
    ],
    ids=["one byte", "1005", "2999", "not utf-8"],
)
def test_a_malformed_close_is_answered_with_the_protocol_error_it_is(payload: bytes, code: int) -> None:
    decided = peer_close(Phase.LIVE, payload, has_backlog=False)
    assert decided.code == code
    assert decided.answer is not None and decided.answer[2:4] == struct.pack("!H", code)
