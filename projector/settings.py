"""Settings of the projector process (env prefix ``LOCSTREAM_PROJECTOR_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from locstream.settings import AuthSettings, DataSettings, KafkaSettings


class ProjectorSettings(BaseSettings):
    model_config = SettingsConfigDict(use_attribute_docstrings=True, env_prefix="LOCSTREAM_PROJECTOR_")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    data: DataSettings = Field(default_factory=DataSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    """for the history endpoint"""
    group_id: str = "locstream-projector"
    """Consumer group."""
    max_batch: int = Field(default=5_000, ge=1)
    """Records per transaction at most."""
    gc_gen0_threshold: int = Field(default=50_000, ge=0)
    """Young-generation GC threshold while applying batches (locstream/gc_tuning.py); 0 keeps CPython's 700."""
    history_retention_days: float = Field(default=7.0, gt=0)
    """History (and so the recognition of retried events) is kept this long, by device time (recorded_at)."""
    prune_interval_seconds: float = Field(default=600.0, gt=0)
    """How often history older than history_retention_days is deleted."""
    ready_max_lag: int = Field(default=10_000, ge=0)
    """/readyz fails while any assigned partition is further behind than this many records."""
    stuck_after_seconds: float = Field(default=30.0, gt=0)
    """/readyz fails when a partition has records beyond the projector's position and the position has not moved
    for this long (a consumer silently stuck after a broker restart, aiokafka #1154)."""
    dlq_suffix: str = ".dlq"
    """Dead-letter topic = events topic + this suffix."""
    access_log: bool = True
    """uvicorn's line per request"""
    host: str = "127.0.0.1"
    """Listen address (health, metrics, history)."""
    port: int = 8002
    """Listen port."""

    @property
    def dlq_topic(self) -> str:
        return self.kafka.topic + self.dlq_suffix
