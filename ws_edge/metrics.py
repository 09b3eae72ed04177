"""The edge's Prometheus metrics. Counts are read from the fan-out and the feed when scraped (nothing is added to
the delivery path); the latency histogram is observed by one connection in 16, once per write."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ws_edge.fanout import Fanout
    from ws_edge.live_feed import LiveFeed

SAMPLE_ONE_CONNECTION_IN = 16


def tenant_label(tenant_id: str) -> str:
    """How a tenant is named in metrics: tenant names are customer data, and ``/metrics`` is often scraped or read
    by more people than the tenants' own, so it carries a stable hash (``locstream tenant-label NAME`` prints it)."""
    return "t-" + hashlib.sha256(tenant_id.encode()).hexdigest()[:12]


class _FromState(Collector):
    def __init__(self, fanout: Fanout, feed: LiveFeed, replays: Callable[[], int]) -> None:
        self.fanout, self.feed, self.replays = fanout, feed, replays

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        connections = GaugeMetricFamily(
            "locstream_edge_connections", "Open WebSocket connections, by tenant (a hash of its id)", labels=["tenant"]
        )
        for tenant, count in self.fanout.connections_by_tenant().items():
            connections.add_metric([tenant_label(tenant)], count)
        yield connections
        yield GaugeMetricFamily(
            "locstream_edge_replay_sessions",
            "Paced replays under way (each reads the topic with a consumer of its own)",
            value=self.replays(),
        )
        yield CounterMetricFamily(
            "locstream_edge_deliveries",
            "Updates and status frames published, times the connections of their tenant",
            value=self.fanout.messages_sent,
        )
        yield CounterMetricFamily(
            "locstream_edge_conflated_updates",
            "Updates replaced by a newer one of the same technician before a slow client got them",
            value=self.fanout.conflated(),
        )
        yield CounterMetricFamily(
            "locstream_edge_slow_disconnects", "Clients closed with 4008", value=self.fanout.slow_disconnects
        )
        lag = GaugeMetricFamily("locstream_edge_consumer_lag_records", "Records not yet applied", labels=["partition"])
        for partition, records in sorted(self.feed.lag().items()):
            lag.add_metric([str(partition)], records)
        yield lag


class EdgeMetrics:
    def __init__(self, fanout: Fanout, feed: LiveFeed, replays: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_FromState(fanout, feed, replays))
        self.delivery_seconds = Histogram(
            "locstream_edge_delivery_seconds",
            "From the API receiving a fix to its frame written to a client (sampled)",
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
