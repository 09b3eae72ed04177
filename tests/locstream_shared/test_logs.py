"""Log filters: repeated messages (aiokafka's reconnect loop) are throttled."""

from __future__ import annotations

import logging

from locstream.logs import RepeatsThrottled, redact


def _record(msg: str, *args: object, name: str = "aiokafka.conn") -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_a_repeated_template_passes_once_per_interval_with_the_count_held_back() -> None:
    now = [100.0]
    throttle = RepeatsThrottled(interval=10.0, clock=lambda: now[0])
    passed = []
    for _ in range(50):
        record = _record("Unable connect to node with id %s", 1)
        if throttle.filter(record):
            passed.append(record.getMessage())
        now[0] += 0.5  # 50 in 25 s
    assert passed == [
        "Unable connect to node with id 1",
        "Unable connect to node with id 1 (and 19 more like it in the last 10 s)",
        "Unable connect to node with id 1 (and 19 more like it in the last 10 s)",
    ]
    assert throttle.filter(_record("another message"))  # templates are throttled separately


JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl"


def test_tokens_are_redacted_in_every_spelling_and_nothing_else_is() -> None:
    spellings = [
        "token",
        "%74oken",
        "t%6Fken",
        "%74%6F%6B%65%6E",
        "access_token",
        "access%5Ftoken",
        "TOKEN",
        "id_token",
    ]
    for name in spellings:
        line = f'127.0.0.1:5 - "WebSocket /ws?protocol=2&{name}=secret-value&cursor=MS4xLjk" [accepted]'
        assert redact(line) == line.replace("secret-value", "[redacted]"), name
    hidden = f"GET /x?q={JWT.replace('e', '%65', 1)} and a bare {JWT} in a message"
    assert JWT not in redact(hidden) and "%65yJ" not in redact(hidden)
    device = "POST /api/v1/ingest/osmand?id=K3yK3yK3y&lat=6.5&lon=3.4 HTTP/1.1"
    assert redact(device) == device.replace("K3yK3yK3y", "[redacted]")
    untouched = "GET /api/v1/field-service/history/export?from=2026-11-29T10:00:00Z&format=csv HTTP/1.1"
    assert redact(untouched) == untouched
