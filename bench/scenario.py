"""A benchmark scenario: its definition (parameter points per size, the headline metric, which systems it runs
against) written beside its run function with ``@scenario(...)``. Every run function has the one signature
``RunFn``: one run of one parameter point against one running system (or, ``standalone``, what it starts itself),
returning flat metrics. ``bench/scenarios.py`` collects them in the report's order."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.systems import RunningSystem

Metrics = dict[str, Any]


@dataclass
class BenchContext:
    """What every run may use besides the system under test."""

    bootstrap: str
    workdir: Path
    postgres: Callable[[], Awaitable[str]]  # the admin DSN of a throwaway PostgreSQL server, started on first use


RunFn = Callable[["RunningSystem", dict[str, Any], BenchContext], Awaitable[Metrics]]


@dataclass(frozen=True)
class Scenario:
    name: str
    run: RunFn
    points: dict[str, list[dict[str, Any]]]  # size -> parameter points
    headline: str  # the metric compared across systems
    higher_is_better: bool = True
    what: str = ""
    notes: list[str] = field(default_factory=list)
    systems: tuple[str, ...] | None = None  # None: every system; else only these
    standalone: bool = False  # the run starts what it measures itself; no system is started for it
    fresh_per_run: bool = False  # start the system anew for every run, with no warm-up (memory figures)
    once: bool = False  # one run, no warm-up, whatever --runs says (an hour-long soak)
    settings: dict[str, str] = field(default_factory=dict)  # environment the system's services start with


REGISTERED: dict[str, Scenario] = {}


def scenario(name: str, points: dict[str, list[dict[str, Any]]], **definition: Any) -> Callable[[RunFn], RunFn]:
    """Register the decorated run function as scenario ``name`` (a function may run several scenarios)."""

    def register(run: RunFn) -> RunFn:
        assert name not in REGISTERED, f"scenario {name} defined twice"
        REGISTERED[name] = Scenario(name, run, points, **definition)
        return run

    return register
