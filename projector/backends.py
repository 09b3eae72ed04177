"""Choosing the projection's backend from settings: SQLite by default, PostgreSQL when a DSN is given."""

from __future__ import annotations

from pathlib import Path

from locstream.settings import DataSettings
from projector.postgres_store import PostgresProjectionStore
from projector.sqlite_store import SqliteProjectionStore
from projector.store import ProjectionStore


def make_store(data: DataSettings, topic: str) -> ProjectionStore:
    """``LOCSTREAM_DATABASE_URL=postgresql://...`` selects PostgreSQL; otherwise SQLite under the data dir."""
    url = data.database_url
    if url and url.startswith(("postgresql://", "postgres://")):
        return PostgresProjectionStore(url, topic)
    if url and url.startswith("sqlite:///"):
        return SqliteProjectionStore(Path(url.removeprefix("sqlite:///")), topic, data.sqlite_cache_mib)
    if url:
        raise ValueError(f"LOCSTREAM_DATABASE_URL must start with postgresql:// or sqlite:///, not {url.split(':')[0]}")
    return SqliteProjectionStore(data.projection_db, topic, data.sqlite_cache_mib)
