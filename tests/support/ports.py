"""Free ports on the loopback for the services the tests start (the broker's pair comes from ``launch.broker``).

A port the kernel picks (bind to port 0, then close) can be picked again by another test process before the
service that was given it binds it; that service then fails to start, while another process's service answers its
readiness check on the same port, and the test talks to the wrong service (seen once: a 404 from another test's
edge). So each test process takes its ports from a range of its own, below Linux's ephemeral range (32768 and up,
where client sockets get theirs) and below the brokers' (20000-32000), one after the other, each checked free.
"""

from __future__ import annotations

import itertools
import os
import random
import socket

RANGE_START, RANGE_SIZE, RANGES = 10_000, 1_000, 10


def _range_index() -> int:
    """gw0, gw1, ... (pytest-xdist's workers) take ranges 0, 1, ...; a process without workers (the serial and the
    alone passes, which run beside the workers) takes the last."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit():
        return int(worker[2:]) % (RANGES - 1)
    return RANGES - 1


_FIRST = RANGE_START + _range_index() * RANGE_SIZE
_NEXT = itertools.count(random.randrange(RANGE_SIZE))


def free_port() -> int:
    for _ in range(RANGE_SIZE):
        port = _FIRST + next(_NEXT) % RANGE_SIZE
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_FIRST}-{_FIRST + RANGE_SIZE - 1}")
