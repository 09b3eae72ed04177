"""The floor under a v1 fan-out on this machine: CPU per ``send()`` of one small frame to many loopback sockets.

``python -m bench.send_floor [--sockets 1000] [--rounds 100] [--size 250] [--json]``: a child process accepts and
reads everything; this process sends ``size`` bytes to each socket in turn, ``rounds`` times, and prints the user and
system CPU per call. A fan-out that writes each update to each client with its own ``send()`` cannot cost less. The
fanout scenario runs it right after each measured window (``floor``), so a delivery's cost is a ratio to the floor
of the same moment on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import socket


def _reader(server: socket.socket, sockets: int, expected: int) -> None:
    selector = selectors.DefaultSelector()
    for _ in range(sockets):
        connection, _ = server.accept()
        connection.setblocking(False)
        selector.register(connection, selectors.EVENT_READ)
    total = 0
    while total < expected:
        for key, _ in selector.select():
            total += len(key.fileobj.recv(1 << 16))  # type: ignore[union-attr]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--size", type=int, default=250)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4096)
    child = os.fork()
    if child == 0:
        _reader(server, args.sockets, args.sockets * args.rounds * args.size)
        os._exit(0)
    sockets = [socket.create_connection(server.getsockname()) for _ in range(args.sockets)]
    payload = b"x" * args.size
    before = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(args.rounds):
        for s in sockets:
            s.send(payload)
    after = resource.getrusage(resource.RUSAGE_SELF)
    os.waitpid(child, 0)
    calls = args.sockets * args.rounds
    user = (after.ru_utime - before.ru_utime) / calls * 1e6
    system = (after.ru_stime - before.ru_stime) / calls * 1e6
    if args.json:
        print(
            json.dumps(
                {"user_us": round(user, 3), "system_us": round(system, 3), "us_per_send": round(user + system, 3)}
            )
        )
    else:
        print(f"per send() of {args.size} B: user {user:.2f} µs, system {system:.2f} µs, total {user + system:.2f} µs")


if __name__ == "__main__":
    main()
