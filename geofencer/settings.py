"""Settings of the geofence processor (env prefix ``LOCSTREAM_GEOFENCER_``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from locstream.settings import ConsumingServiceSettings


class GeofencerSettings(ConsumingServiceSettings):
    model_config = SettingsConfigDict(use_attribute_docstrings=True, env_prefix="LOCSTREAM_GEOFENCER_")

    group_id: str = Field(default="locstream-geofencer", min_length=1)
    """The consumer group the instances share the location topic's partitions in (docs/scale-out.md); its state's
    changelog topic is named after the location topic (``<topic>.derived-state``)."""
    instance_id: str = ""
    """This instance's static member id in the group (Kafka's ``group.instance.id``): an instance restarted within
    the session timeout gets its partitions back at once, with no rebalance and no restore. Empty: the id made with
    its local store (one store, one member). Two running instances must never share one."""
    session_timeout_seconds: float = Field(default=10.0, ge=6, le=300)
    """How long the group waits for a silent instance before its partitions go to the others (the broker's
    ``group.min.session.timeout.ms`` is 6 s by default)."""
    max_batch: int = Field(default=20_000, ge=1)
    """Records per batch at most (one state transaction, and one changelog append, each). What a batch stores grows
    with the technicians in it, not with its fixes: working through a backlog, 20,000 read 36% more fixes a second
    than 5,000 (docs/benchmarks.md); a live topic's batches are what arrived since the last."""
    start_from: Literal["end", "beginning"] = "end"
    """Where a first start reads the location topic from (later starts resume from the stored offsets): the end
    (crossings from now on), or the beginning (every fix the topic still holds)."""
    stays_horizon_seconds: float = Field(default=3_600.0, ge=60, le=7 * 86_400)
    """How late a fix may come and still change a technician's stops and trips (device time behind its newest fix);
    a later one is kept in the history only. The processor keeps this much of each technician's fixes."""
    stays_max_fixes: int = Field(default=2_000, ge=100, le=100_000)
    """At most about this many of a technician's fixes kept for late ones (before the horizon is reached)."""
    gc_gen0_threshold: int = Field(default=50_000, ge=0)
    """Young-generation GC threshold (locstream/gc_tuning.py); 0 keeps CPython's 700. A batch makes tens of thousands
    of short-lived objects (decoded events, the rules' states): at 700 the collector ran every few fixes."""
    port: int = 8004
    """Listen port."""
