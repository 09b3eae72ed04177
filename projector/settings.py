"""Settings of the projector process (env prefix ``LOCSTREAM_PROJECTOR_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from locstream.settings import ConsumingServiceSettings


class ProjectorSettings(ConsumingServiceSettings):
    model_config = SettingsConfigDict(use_attribute_docstrings=True, env_prefix="LOCSTREAM_PROJECTOR_")

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
    allowed_origins: list[str] = Field(default_factory=list)
    """Browser origins that may read the history and its export (CORS), when the dispatch map is served from
    another origin than this process (LOCSTREAM_EDGE_MAP_HISTORY_BASE); empty: same origin only, as behind the
    proxy."""
    max_exports_per_tenant: int = Field(default=2, ge=1)
    """History exports (GET /history/export) running at once for one tenant; more get 429 with Retry-After."""
    max_exports: int = Field(default=6, ge=1)
    """History exports running at once in this process, every tenant's; more get 429 with Retry-After."""
    dlq_suffix: str = ".dlq"
    """Dead-letter topic = events topic + this suffix."""
    port: int = 8002
    """Listen port."""

    @property
    def dlq_topic(self) -> str:
        return self.kafka.topic + self.dlq_suffix
