"""Summaries: percentiles of one run, median and spread over runs."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def percentiles(samples: Sequence[float]) -> dict[str, float | int]:
    """p50/p95/p99/max in milliseconds of latency samples given in seconds."""
    if not samples:
        return {"count": 0}
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {
        "count": len(ordered),
        "p50_ms": at(0.50),
        "p95_ms": at(0.95),
        "p99_ms": at(0.99),
        "max_ms": round(ordered[-1] * 1000, 3),
    }


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Median and spread (min, max, relative half-range) of one figure over repeated runs."""
    if not values:
        return {}
    median = statistics.median(values)
    low, high = min(values), max(values)
    spread = (high - low) / 2 / median if median else 0.0
    return {"median": round(median, 4), "min": round(low, 4), "max": round(high, 4), "spread": round(spread, 4)}
