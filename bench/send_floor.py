"""The floor under a v1 fan-out on this machine: CPU per ``send()`` of one small frame to many loopback sockets.

``python -m bench.send_floor [--sockets 1000] [--rounds 100] [--size 250] [--rate 0] [--json]``: this process sends
``size`` bytes to each socket in turn, ``rounds`` times, and prints the user and system CPU per call. A fan-out that
writes each update to each client with its own ``send()`` cannot cost less.

Two floors, as the receiving end shapes what a ``send()`` costs on loopback (the sender's CPU runs the receiver's
TCP work and wakes it up):

- ``--rate 0`` (back to back, the issue-6 floor): the rounds follow one another and a child process reads everything
  in a busy ``select()`` loop, so it is seldom asleep when a segment comes;
- ``--rate R``: ``R`` rounds a second, as the fanout scenario posts events, to a child that reads like the
  bench's WebSocket clients (uvloop's event loop, asleep between rounds): each round starts by waking it up, as
  each event of the fan-out does.

The fanout scenario runs both right after each measured window, so a delivery's cost is a ratio to the floors of
the same moment on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import selectors
import socket
import time


def _busy_reader(server: socket.socket, sockets: int, expected: int) -> None:
    selector = selectors.DefaultSelector()
    for _ in range(sockets):
        connection, _ = server.accept()
        connection.setblocking(False)
        selector.register(connection, selectors.EVENT_READ)
    total = 0
    while total < expected:
        for key, _ in selector.select():
            total += len(key.fileobj.recv(1 << 16))  # type: ignore[union-attr]


def _event_loop_reader(server: socket.socket, sockets: int, expected: int) -> None:
    """Reads as ``bench/wsclient.py`` does: protocol callbacks on uvloop's event loop."""

    async def read() -> None:
        loop, done, total = asyncio.get_running_loop(), asyncio.Event(), 0

        class Reader(asyncio.Protocol):
            def data_received(self, data: bytes) -> None:
                nonlocal total
                total += len(data)
                if total >= expected:
                    done.set()

        for _ in range(sockets):
            connection, _ = await loop.sock_accept(server)
            await loop.connect_accepted_socket(Reader, connection)
        await done.wait()

    import uvloop

    server.setblocking(False)
    uvloop.run(read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--size", type=int, default=250)
    parser.add_argument("--rate", type=float, default=0.0, help="rounds per second (0: back to back)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4096)
    expected = args.sockets * args.rounds * args.size
    child = os.fork()
    if child == 0:
        (_event_loop_reader if args.rate else _busy_reader)(server, args.sockets, expected)
        os._exit(0)
    sockets = [socket.create_connection(server.getsockname()) for _ in range(args.sockets)]
    payload = b"x" * args.size
    before = resource.getrusage(resource.RUSAGE_SELF)
    began = time.monotonic()
    for round_ in range(args.rounds):
        for s in sockets:
            s.send(payload)
        if args.rate:
            time.sleep(max(0.0, began + (round_ + 1) / args.rate - time.monotonic()))
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
