"""Free ports on the loopback for the services the tests start (the broker's pair comes from ``launch.broker``)."""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
