"""Log filters: repeated messages (aiokafka's reconnect loop) are throttled."""

from __future__ import annotations

import logging

from locstream.logs import RepeatsThrottled


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
