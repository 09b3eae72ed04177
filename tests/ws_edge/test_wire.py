"""The frames the edge writes straight to the transport are what a WebSocket parser reads (websockets' own, the
library uvicorn's protocol is built on), with payloads of every length class of RFC 6455."""

from __future__ import annotations

import json
from collections.abc import Iterator

from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from ws_edge import framing, messages, wire
from ws_edge.outbox import Message, Update


def _parsed(data: bytes) -> Iterator[Frame]:
    reader = StreamReader()
    reader.feed_data(data)
    while reader.buffer:
        parser = Frame.parse(reader.read_exact, mask=False)
        try:
            next(parser)
        except StopIteration as done:
            yield done.value


def _update(technician_id: str, offset: int, name: str = "Ada") -> Update:
    location = {"technician_id": technician_id, "technician_name": name, "latitude": 6.5, "longitude": 3.4}
    return messages.update(location, offset, f"c{offset}")


def test_text_frames_of_every_length_class_parse_back() -> None:
    texts = ["", "x" * 125, "y" * 126, "z" * 65_535, "w" * 65_536, '{"type":"pong"}']
    data = b"".join(framing.text_frame(text.encode()) for text in texts)
    parsed = list(_parsed(data))
    assert [(f.opcode, f.fin, bytes(f.data).decode()) for f in parsed] == [(Opcode.TEXT, True, t) for t in texts]
    assert [p.decode() for p in framing.payloads(data)] == texts


def test_v1_writes_one_frame_per_update_and_v2_one_batch_per_run_of_updates() -> None:
    taken: list[Message] = [_update("t1", 1), _update("t2", 2), messages.PONG, _update("t1", 3)]
    v1 = [json.loads(bytes(f.data)) for f in _parsed(wire.encode(taken, batched=False))]
    assert [(m["type"], m.get("cursor")) for m in v1] == [
        ("location_update", "c1"),
        ("location_update", "c2"),
        ("pong", None),
        ("location_update", "c3"),
    ]
    v2 = [json.loads(bytes(f.data)) for f in _parsed(wire.encode(taken, batched=True))]
    assert [(m["type"], m.get("cursor"), len(m.get("data", []))) for m in v2] == [
        ("location_batch", "c2", 2),
        ("pong", None, 0),
        ("location_batch", "c3", 1),
    ]
    assert v2[0]["data"][1]["technician_id"] == "t2"


def test_a_batch_past_its_size_limit_is_split_without_losing_an_update() -> None:
    long_name = "n" * 1000
    taken: list[Message] = [_update(f"t{i}", i, long_name) for i in range(600)]  # ~650 KB of items
    batches = [json.loads(bytes(f.data)) for f in _parsed(wire.encode(taken, batched=True))]
    assert len(batches) >= 3 and all(len(json.dumps(b)) < wire.MAX_BATCH_CHARS + 2000 for b in batches)
    assert [item["technician_id"] for b in batches for item in b["data"]] == [f"t{i}" for i in range(600)]
    assert [b["cursor"] for b in batches][-1] == "c599"
