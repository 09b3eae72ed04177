"""What the geofence processor remembers, in SQLite beside its offsets: for each technician, the fences it is
inside and its latest good fix's device time and place; for each partition, the next offset to read. Both change in one
transaction per batch, after the batch's crossings were acknowledged by Kafka: a crash before the commit repeats
the batch from the state before it, which repeats the same crossings with the same event ids (deduplicated by
the consumers), and a crash after it repeats nothing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from domain.geofencing import TechnicianFences

_SCHEMA = """
CREATE TABLE IF NOT EXISTS technicians (
    tenant_id TEXT NOT NULL,
    technician_id TEXT NOT NULL,
    latest TEXT,
    inside TEXT NOT NULL,
    latitude REAL,
    longitude REAL,
    PRIMARY KEY (tenant_id, technician_id)
);
CREATE TABLE IF NOT EXISTS offsets (partition INTEGER PRIMARY KEY, next_offset INTEGER NOT NULL);
"""

Key = tuple[str, str]
Row = tuple[str, str, str | None, str, float | None, float | None]


def _fences(inside: str, latest: str | None, latitude: float | None, longitude: float | None) -> TechnicianFences:
    fences = TechnicianFences(set(json.loads(inside)), datetime.fromisoformat(latest) if latest else None)
    if latitude is not None and longitude is not None:
        fences.latitude, fences.longitude = latitude, longitude
    return fences


class GeofencerState:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(technicians)")}
        for added in ("latitude", "longitude"):  # a state stored before the last good fix's place was kept
            if added not in columns:
                self._db.execute(f"ALTER TABLE technicians ADD COLUMN {added} REAL")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "state not open"
        return self._db

    def load(self) -> tuple[dict[Key, TechnicianFences], dict[int, int]]:
        technicians = {
            (tenant, technician): _fences(inside, latest, latitude, longitude)
            for tenant, technician, latest, inside, latitude, longitude in self.db.execute(
                "SELECT tenant_id, technician_id, latest, inside, latitude, longitude FROM technicians"
            )
        }
        offsets = dict(self.db.execute("SELECT partition, next_offset FROM offsets").fetchall())
        return technicians, offsets

    @staticmethod
    def rows(changed: Iterable[tuple[Key, TechnicianFences]]) -> list[Row]:
        """The technicians' state as it is now, to commit later (the state goes on changing meanwhile)."""
        return [
            (
                tenant,
                technician,
                state.latest.isoformat() if state.latest else None,
                json.dumps(sorted(state.inside)),
                state.latitude if state.last_good() else None,
                state.longitude if state.last_good() else None,
            )
            for (tenant, technician), state in changed
        ]

    def commit(self, rows: list[Row], next_offsets: dict[int, int]) -> None:
        """One transaction; from one thread at a time (the processor's committer)."""
        db = self.db
        db.execute("BEGIN")
        try:
            db.executemany(
                "INSERT OR REPLACE INTO technicians (tenant_id, technician_id, latest, inside, latitude, longitude)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            db.executemany("INSERT OR REPLACE INTO offsets VALUES (?, ?)", list(next_offsets.items()))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
