"""A crowd's work is run a few items per turn of the event loop, in order, with the loop's other callbacks between."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from ws_edge.turn_budget import TurnBudget


async def _turns_of(
    budget: TurnBudget, items: int, failing: frozenset[int] = frozenset()
) -> tuple[list[int], list[int]]:
    """Queue ``items`` works in one step; each notes the turn it ran in (a ticker rescheduled each turn counts them)."""
    loop = asyncio.get_running_loop()
    turn = 0

    def tick() -> None:
        nonlocal turn
        turn += 1
        if not all_ran.is_set():
            loop.call_soon(tick)

    ran: list[int] = []
    turns: list[int] = []
    all_ran = asyncio.Event()
    loop.call_soon(tick)

    def work(i: int) -> None:
        if i == items - 1:
            all_ran.set()
        if i in failing:
            raise RuntimeError(f"work {i} fails")
        ran.append(i)
        turns.append(turn)

    for i in range(items):
        budget.run(lambda i=i: work(i))  # type: ignore[misc]
    await all_ran.wait()
    return ran, turns


async def test_a_crowd_runs_a_few_per_turn_in_order_with_the_loop_turning_between() -> None:
    budget = TurnBudget("test", per_turn=16)
    ran, turns = await _turns_of(budget, 1_000)
    assert ran == list(range(1_000))
    per_turn = Counter(turns)
    assert max(per_turn.values()) <= 16, per_turn.most_common(3)
    assert len(per_turn) >= 1_000 // 16, "the loop turned between the handfuls"
    assert len(budget) == 0


async def test_work_that_fails_is_logged_and_the_rest_still_runs(caplog: pytest.LogCaptureFixture) -> None:
    budget = TurnBudget("test", per_turn=4)
    ran, _ = await _turns_of(budget, 20, failing=frozenset({5, 9}))  # both queued (the first 4 run at once)
    assert ran == [i for i in range(20) if i not in (5, 9)]
    assert [r.getMessage() for r in caplog.records] == ["test: queued work failed"] * 2


async def test_once_idle_the_next_work_runs_at_once() -> None:
    budget = TurnBudget("test", per_turn=2)
    await _turns_of(budget, 10)
    for _ in range(3):  # a turn or two for the budget to see nothing is left
        await asyncio.sleep(0)
    done: list[int] = []
    budget.run(lambda: done.append(1))
    assert done == [1]
