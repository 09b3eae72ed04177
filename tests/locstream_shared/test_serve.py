"""Every service's server against peers that never finish a request (slowloris), as a process with a lowered
descriptor limit so that exhausting it takes seconds; and the gate's rule on its own."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import pytest

from locstream.admission import PendingGate, pending_cap
from tests.support.kafka_io import produce
from tests.support.maps import fix, open_map, recv_json
from tests.support.stack import Service, Stack

DESCRIPTORS = 256  # the edge process's limit here: without a cap, ~230 half-open requests exhaust it
HEAD_TIMEOUT = 2.0


class _Peer:
    def __init__(self, name: str) -> None:
        self.name = name
        self.shed_count = 0

    def shed(self) -> None:
        self.shed_count += 1


def test_the_gate_sheds_the_connection_that_waited_longest_and_counts_deadlines() -> None:
    gate = PendingGate(cap=2, report_every=10.0, clock=lambda: 0.0)
    first, second, third = _Peer("first"), _Peer("second"), _Peer("third")
    gate.admit(first)
    gate.admit(second)
    gate.admit(third)  # one too many: the oldest goes
    assert (first.shed_count, second.shed_count, third.shed_count) == (1, 0, 0) and len(gate) == 2
    gate.release(second)
    gate.release(second)  # idempotent
    gate.timed_out(third)
    assert len(gate) == 0 and gate.shed_total == 1 and gate.timed_out_total == 1
    assert pending_cap(1_000, 20_000) == 1_000 and pending_cap(1_000, 256) == 96 and pending_cap(1_000, 10) == 16


def test_a_burst_goes_over_the_cap_for_a_moment_but_never_past_the_limit() -> None:
    now = [0.0]
    gate = PendingGate(cap=2, clock=lambda: now[0], limit=4, grace_seconds=1.0)
    peers = [_Peer(str(i)) for i in range(6)]
    for peer in peers[:4]:  # a reconnect storm: all within the grace, over the cap, up to the limit
        gate.admit(peer)
    assert [p.shed_count for p in peers[:4]] == [0, 0, 0, 0] and len(gate) == 4
    gate.admit(peers[4])  # at the limit: the oldest goes, young as it is
    assert peers[0].shed_count == 1 and len(gate) == 4
    gate.release(peers[2])
    gate.release(peers[3])
    now[0] = 1.5  # the ones left have waited past the grace: over the cap, the oldest goes
    gate.admit(peers[5])
    assert peers[1].shed_count == 1 and peers[4].shed_count == 0 and len(gate) == 2 and gate.shed_total == 2


async def _half_open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    """A connection that sends part of a request head and then nothing (None: the connect itself failed)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return None
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    return reader, writer


async def _answer_of(reader: asyncio.StreamReader, within: float) -> str:
    """What the server did with a half-open connection: the status it answered before closing, or how it ended."""
    try:
        data = await asyncio.wait_for(reader.read(), within)
    except TimeoutError:
        return "still open"
    except ConnectionError:
        return "reset"
    return data.split(b"\r\n", 1)[0].decode() if data else "closed"


async def _healthz(edge: Service) -> int:
    async with httpx.AsyncClient(timeout=5.0) as http:
        return (await http.get(f"{edge.url}/healthz")).status_code


@pytest.mark.integration
async def test_half_open_requests_never_exhaust_descriptors_and_are_closed_at_the_deadline(stack: Stack) -> None:
    stack.env["LOCSTREAM_SERVER_HEAD_TIMEOUT_SECONDS"] = str(HEAD_TIMEOUT)
    edge = await stack.start("ws-edge", max_open_files=DESCRIPTORS)
    token = stack.token("tenant-a")
    watching, initial = await open_map(edge, token)  # authenticated before the attack
    assert initial["type"] == "initial_state"

    attackers: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    began = time.monotonic()
    for _ in range(3):  # three waves of more half-open requests than the process has descriptors
        wave = await asyncio.gather(*(_half_open(edge.port) for _ in range(DESCRIPTORS)))
        attackers.extend(peer for peer in wave if peer is not None)
        assert await _healthz(edge) == 200  # a new client still gets in: it sheds the oldest half-open one
    newcomer, fresh = await open_map(edge, token)  # a new map too, during the attack
    assert fresh["type"] == "initial_state"
    await produce(stack.kafka, [fix("tenant-a", "tech-1", 1, latitude=5.0)])
    for ws in (watching, newcomer):  # and the authenticated ones are served
        assert (await recv_json(ws))["data"]["latitude"] == 5.0
    attack_took = time.monotonic() - began

    answers = Counter(await asyncio.gather(*(_answer_of(reader, HEAD_TIMEOUT + 10) for reader, _ in attackers)))
    for _, writer in attackers:
        writer.close()
    assert len(attackers) >= 3 * DESCRIPTORS - 10, f"only {len(attackers)} connects went through"
    assert "still open" not in answers, answers  # every one closed: at the cap (503) or its deadline (408)
    assert set(answers) <= {"HTTP/1.1 503 Service Unavailable", "HTTP/1.1 408 Request Timeout", "closed", "reset"}
    assert answers["HTTP/1.1 408 Request Timeout"] >= 1, answers
    assert attack_took < 60
    log = edge.log()
    assert "shed at the cap of 96 pending" in log and "Too many open files" not in log
