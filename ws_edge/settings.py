"""Settings of the WebSocket edge process (env prefix ``LOCSTREAM_EDGE_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from locstream.settings import AuthSettings, DataSettings, KafkaSettings


class EdgeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOCSTREAM_EDGE_")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    data: DataSettings = Field(default_factory=DataSettings)
    # A client with more than this many bytes yet to get, or a write unfinished for longer than this, is closed as a
    # slow consumer (4008); it may resume with its cursor. Once behind, it gets only the latest update of each
    # technician (conflation).
    slow_consumer_bytes: int = Field(default=4 * 1024 * 1024, ge=1_024)
    slow_consumer_seconds: float = Field(default=10.0, gt=0)
    # A tenant shard: serve only these tenants (and consume only their partitions); empty: every tenant.
    tenants: list[str] = Field(default_factory=list)
    # Updates kept per tenant: every client reads from them and resumes from them with a cursor (older cursors get a
    # fresh initial_state, and so does a client whose next updates a burst larger than this evicted).
    resume_buffer_size: int = Field(default=10_000, ge=1)
    # A cursor ahead of this edge (the client came from a node further along) waits this long for it to catch up.
    resume_wait_seconds: float = Field(default=2.0, ge=0)
    # How long a connection without a token in the URL, a cookie or a subprotocol has to send {"type":"auth"} (4001).
    auth_timeout_seconds: float = Field(default=5.0, gt=0)
    # Browser origins allowed to connect besides the edge's own (an Origin header naming this host); "*" allows any.
    # Clients that send no Origin (not browsers) are not affected.
    allowed_origins: list[str] = Field(default_factory=list)
    # At a token's exp plus this many seconds the connection is closed with 4001, unless the client sent a fresh
    # token with {"type":"auth"} before.
    token_expiry_leeway_seconds: float = Field(default=10.0, ge=0, le=30)
    # Inbound messages per second a connection may send (burst 4x); over it: 1008. 0 disables.
    client_message_rate: float = Field(default=20.0, ge=0)
    # Connections per tenant on this edge; over it: 1013 (try again later). 0 disables.
    max_connections_per_tenant: int = Field(default=25_000, ge=0)
    # Server pings (a dead peer is closed after ping interval + timeout).
    ping_interval_seconds: float = Field(default=25.0, gt=0)
    ping_timeout_seconds: float = Field(default=20.0, gt=0)
    # How long a new connection waits for the edge to catch up with the topic before initial_state.
    bootstrap_timeout_seconds: float = Field(default=30.0, gt=0)
    # A technician whose last fix is older than this is shown stale (it keeps its last status).
    stale_after_seconds: float = Field(default=600.0, gt=0)
    # The dispatch map page (/map): where its live feed is (empty: this edge), where it polls
    # /technicians/locations/active when the feed is down (empty: this origin), and map tiles ({z}/{x}/{y} URL;
    # empty: a plain background with a graticule, as on machines without internet).
    map_feed_url: str = ""
    map_api_base: str = ""
    map_tile_url: str = ""
    map_tile_attribution: str = ""
    access_log: bool = True  # uvicorn's line per handshake and request (tokens redacted)
    host: str = "127.0.0.1"
    port: int = 8003
