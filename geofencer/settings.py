"""Settings of the geofence processor (env prefix ``LOCSTREAM_GEOFENCER_``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from locstream.settings import ConsumingServiceSettings


class GeofencerSettings(ConsumingServiceSettings):
    model_config = SettingsConfigDict(use_attribute_docstrings=True, env_prefix="LOCSTREAM_GEOFENCER_")

    max_batch: int = Field(default=5_000, ge=1)
    """Records per batch at most (one state transaction each)."""
    start_from: Literal["end", "beginning"] = "end"
    """Where a first start reads the location topic from (later starts resume from the stored offsets): the end
    (crossings from now on), or the beginning (every fix the topic still holds)."""
    port: int = 8004
    """Listen port."""
