"""The ingest API's Prometheus metrics, in a registry of its own (several services may share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class IngestMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "locstream_ingest_events_total",
            "Events appended to Kafka and acknowledged (fixes and technician updates)",
            registry=self.registry,
        )
        self.failures = Counter(
            "locstream_ingest_publish_failures_total",
            "Publishes answered 503, by reason (timeout, renewed)",
            ["reason"],
            registry=self.registry,
        )
        self.device_rejects = Counter(
            "locstream_ingest_device_fixes_rejected_total",
            "Fixes a tracking app sent that could never be taken (unreadable or invalid), by protocol",
            ["protocol"],
            registry=self.registry,
        )
        self.produce_seconds = Histogram(
            "locstream_ingest_produce_seconds",
            "From handing events to the producer to Kafka's acknowledgement",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )
