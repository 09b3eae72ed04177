"""Settings of the ingest API process (env prefix ``LOCSTREAM_PRODUCERS_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from locstream.settings import OutboundSettings, ServiceSettings


class ProducersSettings(ServiceSettings):
    model_config = SettingsConfigDict(use_attribute_docstrings=True, env_prefix="LOCSTREAM_PRODUCERS_")

    outbound: OutboundSettings = Field(default_factory=OutboundSettings)
    ack_timeout_seconds: float = Field(default=5.0, gt=0)
    """How long a POST waits for Kafka's acknowledgement before answering 503 (never 202 unacknowledged)."""
    retry_after_seconds: int = Field(default=5, ge=1)
    """Seconds a client should wait before retrying after a 503."""
    max_batch_items: int = Field(default=1_000, ge=1, le=100_000)
    """Fixes per batch request (more: 413)."""
    batches_per_tenant: int = Field(default=2, ge=1)
    """A tenant's batch requests validated and sent to Kafka at once in this process; its others wait their turn. Ten
    gateways of one tenant posting 1,000-fix batches at once otherwise made the API validate them all in the same
    turns of its event loop, ahead of every other tenant's POSTs."""
    max_geofences_per_tenant: int = Field(default=10_000, ge=1)
    """Fences a tenant may define (every service holds every tenant's fences in memory)."""
    max_alert_rules_per_tenant: int = Field(default=1_000, ge=1)
    """Alert rules a tenant may define (each is evaluated against each of its technicians' facts)."""
    max_webhook_endpoints_per_tenant: int = Field(default=100, ge=1)
    """Webhook endpoints a tenant may define (each with its own retries and circuit breaker)."""
    max_fence_positions_per_tenant: int = Field(default=1_000_000, ge=100)
    """A tenant's budget of fence positions: each polygon counts its positions and each fence at least 100 (a
    circle too). Past it, 422. At the budget the geofence processor holds about 28 MB of the tenant's fences and the
    other services about 22 MB, and a fix among stacked fences costs at most a few ms (docs/geofences.md)."""
    max_body_bytes: int = Field(default=1_048_576, ge=1_024)
    """Request body size (more: 413, enforced while the body streams in)."""
    body_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    """A request body must have arrived this long after its head (more: 408 and the connection is closed)."""
    max_future_skew_seconds: float = Field(default=120.0, ge=0)
    """How far in the future a fix's recorded_at may be (device clocks drift); older than the topic's retention
    (KAFKA_RETENTION_DAYS) is refused too."""
    token_rate: float = Field(default=500.0, ge=0)
    """Fixes per second and burst, per token and per tenant (token buckets in each API process); 0 disables."""
    token_burst: int = Field(default=5_000, ge=1)
    """Burst of token_rate."""
    tenant_rate: float = Field(default=5_000.0, ge=0)
    """Fixes per second per tenant, per API process; 0 disables."""
    tenant_burst: int = Field(default=20_000, ge=1)
    """Burst of tenant_rate."""
    failed_auth_rate: float = Field(default=2.0, ge=0)
    """Failed authentications (a wrong device key, a bad token) per second per client address, burst
    failed_auth_burst; past it every ingest request of that address gets 429 until its budget refills; 0 disables.
    Behind a proxy the address is the client's only where uvicorn trusts the proxy's X-Forwarded-For
    (LOCSTREAM_SERVER_TRUSTED_PROXIES)."""
    failed_auth_burst: int = Field(default=20, ge=1)
    """Burst of failed_auth_rate."""
    recent_fixes: int = Field(default=200_000, ge=0)
    """Identities of recently acknowledged fixes each API process remembers (at least the last half of this many,
    never more; about 120 bytes each), to answer a retry "duplicate" without appending it again (retries it does not
    remember are appended and dropped by every consumer)."""
    gc_gen0_threshold: int = Field(default=50_000, ge=0)
    """Young-generation GC threshold (locstream/gc_tuning.py): a batch request allocates thousands of objects."""
    access_log: bool = False
    """uvicorn's line per request. Off by default here: at thousands of POSTs/s it cost 18% of a single-fix POST's
    CPU (py-spy). Turn it on to see each request's status line."""
    port: int = 8001
    """Listen port."""
