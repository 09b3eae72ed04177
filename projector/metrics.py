"""The projector's Prometheus metrics, in a registry of its own (several services may share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ProjectorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "locstream_projector_events_total",
            "Records consumed, by outcome (applied, duplicate, dead_lettered)",
            ["outcome"],
            registry=self.registry,
        )
        self.lag = Gauge(
            "locstream_projector_lag_records",
            "Records between the partition's end and the projector's position",
            ["partition"],
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "locstream_projector_batch_seconds",
            "Time to apply one batch in one transaction",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.generation = Gauge("locstream_projector_generation", "Current table generation", registry=self.registry)

    def count(self, outcome: str, n: int) -> None:
        if n:
            self.events.labels(outcome).inc(n)

    def value(self, outcome: str) -> float:
        return float(self.events.labels(outcome)._value.get())
