"""Settings of the projector process (env prefix ``LOCSTREAM_PROJECTOR_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from locstream.settings import DataSettings, KafkaSettings


class ProjectorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOCSTREAM_PROJECTOR_")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    data: DataSettings = Field(default_factory=DataSettings)
    group_id: str = "locstream-projector"
    max_batch: int = Field(default=5_000, ge=1)
    host: str = "127.0.0.1"
    port: int = 8002
