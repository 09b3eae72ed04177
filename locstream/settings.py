"""Settings shared by every service; each service nests them in its own settings class.

All come from environment variables (pydantic-settings). Secrets have no default outside dev mode,
so a misconfigured service fails at start-up with the missing variable's name.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from locstream.claim_mapping import parse_role_map
from schemas.claims import Role

# Only used when LOCSTREAM_DEV=1 (set by `locstream dev`); never in production.
DEV_JWT_SECRET = "locstream-dev-secret-do-not-use-in-production"
# What a JWKS key may sign with: RSA keys RS*/PS*, EC keys ES* (never HS*, never none).
ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"})


class KafkaSettings(BaseSettings):
    """Where the broker is and which topic carries the location events (env prefix ``KAFKA_``)."""

    model_config = SettingsConfigDict(use_attribute_docstrings=True, env_prefix="KAFKA_")

    bootstrap_servers: str = "127.0.0.1:9092"
    """Broker addresses; when unset, `make test` and `locstream dev` start the local broker."""
    topic: str = "locations.v1"
    """The events topic."""
    devices_topic: str = "devices.v1"
    """The devices topic (compacted, one partition): device registrations and revocations, read by every ingest
    process."""
    geofences_topic: str = "geofences.v1"
    """The fences topic (compacted, one partition): job sites' definitions and removals, read by every service."""
    rules_topic: str = "tenant-rules.v1"
    """The tenants' rules topic (compacted, one partition): the limits by which each tenant's fixes are judged,
    read by every ingest process."""
    alert_rules_topic: str = "alert-rules.v1"
    """The alert rules topic (compacted, one partition): each tenant's alert rules (docs/alerts.md), read by every
    ingest process."""
    partitions: int = Field(default=6, ge=1)
    """Partitions when the services create the topic."""
    replication_factor: int | None = Field(default=None, ge=1)
    """Replication factor of the topics the services create; unset: 3 on a cluster of three brokers or more, else
    1 (a single broker cannot do better, and loses what it had when its disk does)."""
    min_insync_replicas: int | None = Field(default=None, ge=1)
    """min.insync.replicas of the topics the services create: a write is acknowledged (202) only once this many
    replicas have it. Unset: 2 when the replication factor is 3 or more, else the broker's default."""
    client_id: str = "locstream"
    """Client id prefix."""
    request_timeout_ms: int = Field(default=5_000, ge=1_000)
    """Kafka client request timeout (producers, admin; the projector's group consumer takes 40 s at least). A
    produce request to a leader that froze fails after this and goes to the new leader: more than the ingest API's
    ack timeout (5 s) only keeps a fix waiting on a frozen broker after its 503."""
    fetch_request_timeout_ms: int = Field(default=4_000, ge=1_000)
    """Request timeout of the live consumers outside a group (the edge's feed, the readiness probes, the
    geofencer): a leader that freezes without closing its connections (a long GC pause, a stopped VM) holds the
    partitions it led about twice this before the consumer asks the new one (docs/operations.md, "Broker
    faults")."""
    retention_days: float = Field(default=30.0, gt=0)
    """How long the topic keeps events (its retention.ms, set when a service creates it). The ingest API refuses
    fixes recorded longer ago than this: they would be deleted before anyone could replay them."""
    compression: Literal["none", "gzip", "lz4", "zstd"] = "lz4"
    """Compression of the record batches producers send (lz4 and zstd via cramjam)."""
    topic_epoch: int = Field(default=1, ge=0, le=999_999_999)
    """Part of every cursor handed to clients; bump it when the topic is deleted and created again."""
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    """How the clients reach the brokers: SASL_SSL for most managed Kafka services."""
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    """With SASL_PLAINTEXT or SASL_SSL."""
    sasl_username: str | None = None
    """With SASL_PLAINTEXT or SASL_SSL."""
    sasl_password: SecretStr | None = None
    """With SASL_PLAINTEXT or SASL_SSL; never logged."""
    ssl_cafile: Path | None = None
    """A CA bundle (PEM) to verify the brokers with, for SSL and SASL_SSL; unset: the system's CAs."""
    ssl_certfile: Path | None = None
    """This client's certificate (PEM, its chain after it) for brokers that ask for one (mutual TLS)."""
    ssl_keyfile: Path | None = None
    """The private key of KAFKA_SSL_CERTFILE (PEM, unencrypted); unset: the key is in the certificate's file."""

    @model_validator(mode="after")
    def _credentials_with_sasl(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL_") and (not self.sasl_username or self.sasl_password is None):
            raise ValueError("KAFKA_SECURITY_PROTOCOL=SASL_* needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ValueError("KAFKA_SSL_KEYFILE needs KAFKA_SSL_CERTFILE: the certificate the key belongs to")
        return self


class AuthSettings(BaseSettings):
    """JWT verification (env prefix ``LOCSTREAM_``): HS256 with ``LOCSTREAM_JWT_SECRET``, or an identity
    provider's RS256/ES256 keys from ``LOCSTREAM_JWT_JWKS_URL``; the claims mapped by ``LOCSTREAM_JWT_*_CLAIM``."""

    model_config = SettingsConfigDict(use_attribute_docstrings=True, env_prefix="LOCSTREAM_")

    jwt_secret: SecretStr | None = None
    """HS256 secret, at least 32 bytes; required unless LOCSTREAM_DEV or LOCSTREAM_JWT_JWKS_URL is set."""
    dev: bool = False
    """Dev mode: a well-known secret when LOCSTREAM_JWT_SECRET is unset."""
    jwt_leeway_seconds: int = Field(default=0, ge=0, le=30)
    """Clock leeway for exp/iat."""
    jwt_issuer: str | None = None
    """When set, tokens must carry this issuer (iss), and `locstream token` writes it. Required with a JWKS."""
    jwt_audience: str | None = None
    """When set, tokens must carry this audience (aud), and `locstream token` writes it. Required with a JWKS."""
    jwt_jwks_url: str | None = None
    """The identity provider's JWKS (for Keycloak <issuer>/protocol/openid-connect/certs): tokens are then verified
    with its keys, HS256 tokens refused. Keys are cached; an unknown kid refetches the set at most once per
    LOCSTREAM_JWT_JWKS_REFETCH_SECONDS; a fetch that fails or times out refuses the token (401 / 1008)."""
    jwt_algorithms: str = "RS256,ES256"
    """With a JWKS: the algorithms accepted (RS256-512, PS256-512 for RSA keys, ES256-512 for EC keys), comma
    separated. A token's algorithm must also fit its key's type and curve."""
    jwt_jwks_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    """With a JWKS: how long one fetch of the set may take in all."""
    jwt_jwks_refetch_seconds: float = Field(default=30.0, ge=1)
    """With a JWKS: the least time between two fetches (an unknown kid does not refetch sooner)."""
    jwt_jwks_max_age_seconds: float = Field(default=600.0, ge=1)
    """With a JWKS: keys older than this are fetched again on the next token (a key the provider removed stops
    being accepted then); if that fetch fails, the keys at hand stay in use."""
    jwt_tenant_claim: str = Field(default="tenant_id", min_length=1)
    """The claim holding the tenant: a key of the token, or a dotted path (org.id)."""
    jwt_roles_claim: str = Field(default="role", min_length=1)
    """The claim holding the roles, a string or a list: a key, or a dotted path (realm_access.roles)."""
    jwt_role_map: str = ""
    """Provider role names onto locstream's (fleet-dispatcher=dispatcher,fleet-gateway=device_gateway). When
    set, only mapped names count; unset, locstream's own names (dispatcher, technician, device_gateway, analyst,
    admin) count as they are."""

    @model_validator(mode="after")
    def _keys_required(self) -> AuthSettings:
        self.role_map  # noqa: B018  (a bad entry fails at start-up, naming it)
        if self.jwt_jwks_url is not None:
            if self.jwt_secret is not None:
                raise ValueError("set LOCSTREAM_JWT_SECRET or LOCSTREAM_JWT_JWKS_URL, not both")
            if not self.jwt_issuer or not self.jwt_audience:
                raise ValueError("LOCSTREAM_JWT_JWKS_URL needs LOCSTREAM_JWT_ISSUER and LOCSTREAM_JWT_AUDIENCE")
            if urlsplit(self.jwt_jwks_url).scheme not in ("http", "https"):
                raise ValueError("LOCSTREAM_JWT_JWKS_URL must be an http(s) URL")
            unknown = set(self.algorithms) - ASYMMETRIC_ALGORITHMS
            if unknown or not self.algorithms:
                raise ValueError(
                    f"LOCSTREAM_JWT_ALGORITHMS: {', '.join(sorted(unknown)) or 'none given'}; "
                    f"one or more of {', '.join(sorted(ASYMMETRIC_ALGORITHMS))}"
                )
            return self
        if self.jwt_secret is None:
            if not self.dev:
                raise ValueError(
                    "LOCSTREAM_JWT_SECRET is not set (set it, or LOCSTREAM_JWT_JWKS_URL for an identity provider, "
                    "or LOCSTREAM_DEV=1 for local development)"
                )
            self.jwt_secret = SecretStr(DEV_JWT_SECRET)
        if len(self.jwt_secret.get_secret_value().encode()) < 32:
            raise ValueError("LOCSTREAM_JWT_SECRET must be at least 32 bytes for HS256")
        return self

    @property
    def secret(self) -> str:
        """The HS256 secret (only without a JWKS)."""
        assert self.jwt_secret is not None  # set by the validator unless a JWKS is used
        return self.jwt_secret.get_secret_value()

    @property
    def algorithms(self) -> list[str]:
        return [name.strip() for name in self.jwt_algorithms.split(",") if name.strip()]

    @property
    def role_map(self) -> dict[str, Role]:
        return parse_role_map(self.jwt_role_map)


class DataSettings(BaseSettings):
    """Where local state lives (env prefix ``LOCSTREAM_``)."""

    model_config = SettingsConfigDict(use_attribute_docstrings=True, env_prefix="LOCSTREAM_")

    data_dir: Path = Path(".data")
    """Holds projection.sqlite3; the edge bootstraps from the same file."""
    database_url: str | None = None
    """postgresql://user:pass@host/db for production; unset: SQLite at <data_dir>/projection.sqlite3."""
    sqlite_cache_mib: int = Field(default=256, ge=1)
    """Page cache of the projector's SQLite connection, in MiB: the history's indexes are updated at random places,
    and pages kept in memory are not read again. The projector's RSS grows with its database up to about this
    much above its start (docs/operations.md, "Limits")."""

    @property
    def projection_db(self) -> Path:
        """The projector's SQLite file; the edge bootstraps from it."""
        return self.data_dir / "projection.sqlite3"


class LogSettings(BaseSettings):
    """What the entrypoints log and how (env prefix ``LOCSTREAM_LOG_``); tokens are redacted either way."""

    model_config = SettingsConfigDict(use_attribute_docstrings=True, env_prefix="LOCSTREAM_LOG_")

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """The root logger's level."""
    format: Literal["text", "json"] = "text"
    """json: one JSON object per line (time, level, logger, message, and connection_id on a connection's lines)."""


class MetricsSettings(BaseSettings):
    """Who may read ``/metrics`` (env prefix ``LOCSTREAM_METRICS_``): its figures cover every tenant."""

    model_config = SettingsConfigDict(use_attribute_docstrings=True, env_prefix="LOCSTREAM_METRICS_")

    port: int | None = Field(default=None, ge=1, le=65535)
    """Serve /metrics (and /healthz, /readyz) on this port of the service's host, without a token, and nothing
    else there; the service's own port then answers /metrics with 404. Keep the port off public networks. Unset:
    /metrics is on the service's port and needs an admin's token or LOCSTREAM_METRICS_TOKEN."""
    token: SecretStr | None = None
    """Without a metrics port: a bearer token a scraper may show on /metrics (an admin's JWT works too), at least
    32 characters."""

    @model_validator(mode="after")
    def _long_token(self) -> MetricsSettings:
        if self.token is not None and len(self.token.get_secret_value()) < 32:
            raise ValueError("LOCSTREAM_METRICS_TOKEN must be at least 32 characters")
        return self


class OutboundSettings(BaseSettings):
    """Where tenants' webhooks may make the server call out to (env prefix ``LOCSTREAM_OUTBOUND_``): the public
    internet over https only, unless said here (``locstream/outbound_policy.py``, docs/alerts.md)."""

    model_config = SettingsConfigDict(use_attribute_docstrings=True, env_prefix="LOCSTREAM_OUTBOUND_")

    allow_networks: list[str] = Field(default_factory=list)
    """Networks (CIDR, JSON list) a webhook may reach although they are not on the public internet: an operator's
    own receivers (``["10.20.0.0/16"]``), a development receiver (``["127.0.0.0/8"]``). Empty: none."""
    allow_http: bool = False
    """Let webhooks use plain http (development only: the body and its signature travel unencrypted)."""

    @field_validator("allow_networks")
    @classmethod
    def _networks(cls, networks: list[str]) -> list[str]:
        for network in networks:
            ipaddress.ip_network(network, strict=False)  # a ValueError names it
        return networks

    def networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(network, strict=False) for network in self.allow_networks]


class ServiceSettings(BaseSettings):
    """What every service's settings hold (each service's class sets its env prefix and its port): its Kafka and
    auth settings, where it listens and whether it logs each request."""

    model_config = SettingsConfigDict(use_attribute_docstrings=True)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    access_log: bool = True
    """uvicorn's line per request and WebSocket handshake (tokens redacted)."""
    host: str = "127.0.0.1"
    """Listen address."""
    port: int = 8000
    """Listen port."""


class ConsumingServiceSettings(ServiceSettings):
    """A service that follows the topic with a consumer of its own and reads the projection (projector, edge)."""

    model_config = SettingsConfigDict(use_attribute_docstrings=True)

    data: DataSettings = Field(default_factory=DataSettings)
    stuck_after_seconds: float = Field(default=30.0, gt=0)
    """/readyz fails when a partition has records beyond the consumer's position and the position has not moved
    for this long (a consumer silently stuck after a broker restart, aiokafka #1154)."""


class ServerSettings(BaseSettings):
    """Deadlines and caps of every service's HTTP and WebSocket server (env prefix ``LOCSTREAM_SERVER_``), against
    peers that open connections and never finish a request (slowloris): ``locstream/serve.py``."""

    model_config = SettingsConfigDict(use_attribute_docstrings=True, env_prefix="LOCSTREAM_SERVER_")

    head_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    """A request's head (request line and headers) must be complete this long after the connection opened or the
    request's first byte came; else 408 and the connection is closed."""
    handshake_timeout_seconds: float = Field(default=15.0, gt=0, le=300)
    """A WebSocket must have shown a valid token this long after its upgrade request; else the connection is
    closed (a backstop: the edge closes with 4001 after LOCSTREAM_EDGE_AUTH_TIMEOUT_SECONDS first)."""
    max_pending_connections: int = Field(default=1_000, ge=16)
    """Connections at once without a complete request head or an authenticated WebSocket (held to half the
    process's free descriptors); past it, the one that has waited longest is closed to make room once it has waited
    1 s (a reconnect storm goes over it for a moment, up to half the free descriptors)."""
    keep_alive_seconds: int = Field(default=5, ge=1, le=300)
    """An idle keep-alive HTTP connection is closed after this."""
    trusted_proxies: str = Field(default="127.0.0.1", min_length=1)
    """The reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are believed: addresses or networks,
    comma-separated (`*`: any peer, only where nothing else can reach the port). A request from one of them gets
    the client's address (per-address rate limits, logs) and scheme (device set-up URLs) from those headers; any
    other peer's are ignored. uvicorn's forwarded_allow_ips; compose.yaml lists its proxy's address."""
