"""Settings of the ingest API process (env prefix ``LOCSTREAM_PRODUCERS_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from locstream.settings import AuthSettings, KafkaSettings


class ProducersSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOCSTREAM_PRODUCERS_")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    # How long a POST waits for Kafka's acknowledgement before answering 503 (never 202 unacknowledged).
    ack_timeout_seconds: float = Field(default=5.0, gt=0)
    host: str = "127.0.0.1"
    port: int = 8001
