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
    # Seconds a client should wait before retrying after a 503.
    retry_after_seconds: int = Field(default=5, ge=1)
    max_batch_items: int = Field(default=1_000, ge=1, le=100_000)
    max_body_bytes: int = Field(default=1_048_576, ge=1_024)
    # How far in the future a fix's recorded_at may be (device clocks drift); older than the topic's retention
    # (KAFKA_RETENTION_DAYS) is refused too.
    max_future_skew_seconds: float = Field(default=120.0, ge=0)
    # Fixes per second and burst, per token and per tenant (token buckets in each API process); 0 disables.
    token_rate: float = Field(default=500.0, ge=0)
    token_burst: int = Field(default=5_000, ge=1)
    tenant_rate: float = Field(default=5_000.0, ge=0)
    tenant_burst: int = Field(default=20_000, ge=1)
    # Identities of recently acknowledged fixes each API process remembers, to answer a retry "duplicate"
    # without appending it again (retries it does not remember are appended and dropped by every consumer).
    recent_fixes: int = Field(default=200_000, ge=0)
    # Young-generation GC threshold (locstream/gc_tuning.py): a batch request allocates thousands of objects.
    gc_gen0_threshold: int = Field(default=50_000, ge=0)
    # uvicorn's line per request. Off by default here: at thousands of POSTs/s it cost 18% of a single-fix POST's
    # CPU (py-spy). Turn it on to see each request's status line.
    access_log: bool = False
    host: str = "127.0.0.1"
    port: int = 8001
