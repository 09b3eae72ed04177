"""The inbound rule of the map feed, live and replay: text only, at most the rate (burst 4x), by an explicit clock."""

from __future__ import annotations

from ws_edge.inbound import InboundRule

TEXT = {"type": "websocket.receive", "text": "ping"}


def test_binary_frames_are_refused_1003_and_text_passes() -> None:
    rule = InboundRule(rate=0, now=0.0)
    assert rule.refusal({"type": "websocket.receive", "bytes": b"\x00"}, 0.0) == (
        1003,
        "binary frames are not part of the protocol",
    )
    assert all(rule.refusal(TEXT, 0.0) is None for _ in range(1_000))  # rate 0: no limit


def test_a_burst_of_four_times_the_rate_then_the_rate() -> None:
    rule = InboundRule(rate=2, now=0.0)
    assert [rule.refusal(TEXT, 0.0) for _ in range(8)] == [None] * 8
    assert rule.refusal(TEXT, 0.0) == (1008, "messages sent too fast")
    assert rule.refusal(TEXT, 0.5) is None  # one more a half second later at 2/s
