"""Settings of the WebSocket edge process (env prefix ``LOCSTREAM_EDGE_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from locstream.settings import ConsumingServiceSettings


class EdgeSettings(ConsumingServiceSettings):
    model_config = SettingsConfigDict(use_attribute_docstrings=True, env_prefix="LOCSTREAM_EDGE_")

    slow_consumer_bytes: int = Field(default=4 * 1024 * 1024, ge=1_024)
    """A client with more than this many bytes yet to get, or a write unfinished for longer than this, is closed as
    a slow consumer (4008); it may resume with its cursor. Once behind, it gets only the latest update of each
    technician (conflation)."""
    slow_consumer_seconds: float = Field(default=10.0, gt=0)
    """Seconds a client may go without finishing a write while frames wait (4008)."""
    tenants: list[str] = Field(default_factory=list)
    """A tenant shard: serve only these tenants (and consume only their partitions); empty: every tenant."""
    resume_buffer_size: int = Field(default=10_000, ge=1)
    """Updates kept per tenant: every client reads from them and resumes from them with a cursor (older cursors get
    a fresh initial_state, and so does a client whose next updates a burst larger than this evicted)."""
    resume_wait_seconds: float = Field(default=2.0, ge=0)
    """A cursor ahead of this edge (the client came from a node further along) waits this long for it to catch up."""
    auth_timeout_seconds: float = Field(default=5.0, gt=0)
    """How long a connection without a token in the URL, a cookie or a subprotocol has to send {"type":"auth"}
    (4001)."""
    allowed_origins: list[str] = Field(default_factory=list)
    """Browser origins allowed to connect besides the edge's own (an Origin header naming this host); "*" allows
    any. Clients that send no Origin (not browsers) are not affected. The same origins may read the polling
    fallback (/technicians/locations/active) across origins (CORS)."""
    token_expiry_leeway_seconds: float = Field(default=10.0, ge=0, le=30)
    """At a token's exp plus this many seconds the connection is closed with 4001, unless the client sent a fresh
    token with {"type":"auth"} before."""
    client_message_rate: float = Field(default=20.0, ge=0)
    """Inbound frames per second a connection may send, messages, pings and pongs alike (burst 4x); over it: 1008.
    0 disables."""
    max_connections_per_tenant: int = Field(default=25_000, ge=0)
    """Connections per tenant on this edge; over it: 1013 (try again later). 0 disables."""
    gc_gen0_threshold: int = Field(default=50_000, ge=0)
    """Young-generation GC threshold (locstream/gc_tuning.py); 0 keeps CPython's 700. With thousands of sessions a
    full collection walks every one of their objects (100-200 ms at 10,000 connections, measured): at 700 one came
    every 1.5 s while a tenant opened 10,000 connections and another tenant's frames waited behind each."""
    max_replays_per_tenant: int = Field(default=4, ge=1)
    """Paced replays running at once for one tenant on this edge; more are closed with 1013 and a retry hint."""
    max_replays: int = Field(default=20, ge=1)
    """Paced replays running at once on this edge, every tenant's; more are closed with 1013 and a retry hint."""
    ping_interval_seconds: float = Field(default=25.0, gt=0)
    """Server pings (a dead peer is closed after ping interval + timeout)."""
    ping_timeout_seconds: float = Field(default=20.0, gt=0)
    """A peer that does not answer a ping within this is closed."""
    bootstrap_timeout_seconds: float = Field(default=30.0, gt=0)
    """How long a new connection waits for the edge to catch up with the topic before initial_state."""
    map_feed_url: str = ""
    """The dispatch map page's (/map) live feed, a ws(s):// URL of another node or the proxy (empty: this edge)."""
    map_api_base: str = ""
    """Where the map page polls /technicians/locations/active while the feed is down (empty: this origin)."""
    map_history_base: str = ""
    """Where the map page reads trails and history exports (the projector's /technicians/{id}/location-history and
    /history/export; empty: this origin, as behind the proxy). Another origin must list the page's in
    LOCSTREAM_PROJECTOR_ALLOWED_ORIGINS."""
    map_tile_url: str = ""
    """Map tiles, a {z}/{x}/{y} URL; empty: land and borders drawn from world-atlas (no tile server), under the
    graticule the map always draws."""
    map_tile_attribution: str = ""
    """Shown with the tiles."""
    port: int = 8003
    """Listen port."""
