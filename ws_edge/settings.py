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
    # Frames a client may have queued before it is closed as a slow consumer (4008).
    client_queue_size: int = Field(default=1_000, ge=1)
    # How long a new connection waits for the edge to catch up with the topic before initial_state.
    bootstrap_timeout_seconds: float = Field(default=30.0, gt=0)
    # A technician whose last fix is older than this is shown stale (it keeps its last status).
    stale_after_seconds: float = Field(default=600.0, gt=0)
    access_log: bool = True  # uvicorn's line per handshake and request (tokens redacted)
    host: str = "127.0.0.1"
    port: int = 8003
