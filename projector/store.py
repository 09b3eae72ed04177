"""The current-position table and its consumed offsets, in SQLite, always written together.

One transaction holds a batch's new technician rows *and* the next offset of every partition the batch
came from, so after a crash the table and the offsets agree: replay resumes exactly after the last
applied record (exactly-once effect without Kafka transactions).

Blocking sqlite3 calls run on one worker thread so the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from projector.apply import Fix, Position, Stamp, TechnicianState, apply
from schemas.events import Event

SCHEMA = """
CREATE TABLE IF NOT EXISTS technicians (
    tenant_id TEXT NOT NULL,
    technician_id TEXT NOT NULL,
    name TEXT,
    name_at TEXT, name_partition INTEGER, name_offset INTEGER,
    status TEXT NOT NULL,
    status_at TEXT, status_partition INTEGER, status_offset INTEGER,
    latitude REAL, longitude REAL,
    accuracy_meters REAL, altitude REAL, speed_kmh REAL, heading REAL, activity TEXT, job_id TEXT,
    last_update TEXT, fix_partition INTEGER, fix_offset INTEGER,
    PRIMARY KEY (tenant_id, technician_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS consumed_offsets (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
) WITHOUT ROWID;
"""

_COLUMNS = (
    "tenant_id",
    "technician_id",
    "name",
    "name_at",
    "name_partition",
    "name_offset",
    "status",
    "status_at",
    "status_partition",
    "status_offset",
    "latitude",
    "longitude",
    "accuracy_meters",
    "altitude",
    "speed_kmh",
    "heading",
    "activity",
    "job_id",
    "last_update",
    "fix_partition",
    "fix_offset",
)
_UPSERT = f"INSERT OR REPLACE INTO technicians ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})"

Key = tuple[str, str]  # (tenant_id, technician_id)


@dataclass(frozen=True)
class Snapshot:
    """The table and the offsets it reflects, read in one transaction."""

    states: list[TechnicianState]
    offsets: dict[int, int]  # partition -> next offset to read


def _stamp_to_row(stamp: Stamp | None) -> tuple[str | None, int | None, int | None]:
    if stamp is None:
        return None, None, None
    at, pos = stamp
    return at.isoformat(), pos.partition, pos.offset


def _stamp_from_row(at: str | None, partition: int | None, offset: int | None) -> Stamp | None:
    if at is None or partition is None or offset is None:
        return None
    return datetime.fromisoformat(at), Position(partition, offset)


def state_to_row(state: TechnicianState) -> tuple[Any, ...]:
    fix = state.fix
    fix_cols: tuple[Any, ...] = (
        (
            fix.latitude,
            fix.longitude,
            fix.accuracy_meters,
            fix.altitude,
            fix.speed_kmh,
            fix.heading,
            fix.activity,
            fix.job_id,
            fix.recorded_at.isoformat(),
            fix.position.partition,
            fix.position.offset,
        )
        if fix is not None
        else (None,) * 11
    )
    return (
        state.tenant_id,
        state.technician_id,
        state.name,
        *_stamp_to_row(state.name_at),
        state.status,
        *_stamp_to_row(state.status_at),
        *fix_cols,
    )


def state_from_row(row: Sequence[Any]) -> TechnicianState:
    (
        tenant_id,
        technician_id,
        name,
        name_at,
        name_p,
        name_o,
        status,
        status_at,
        status_p,
        status_o,
        lat,
        lon,
        acc,
        alt,
        speed,
        heading,
        activity,
        job_id,
        last_update,
        fix_p,
        fix_o,
    ) = row
    fix = None
    if last_update is not None:
        fix = Fix(
            latitude=lat,
            longitude=lon,
            recorded_at=datetime.fromisoformat(last_update),
            position=Position(fix_p, fix_o),
            accuracy_meters=acc,
            altitude=alt,
            speed_kmh=speed,
            heading=heading,
            activity=activity,
            job_id=job_id,
        )
    return TechnicianState(
        tenant_id=tenant_id,
        technician_id=technician_id,
        name=name,
        status=status,
        name_at=_stamp_from_row(name_at, name_p, name_o),
        status_at=_stamp_from_row(status_at, status_p, status_o),
        fix=fix,
    )


def _connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # a committed batch survives power loss, not only a crash
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def read_snapshot(path: Path, topic: str) -> Snapshot:
    """Read the table and its offsets consistently; an absent database is an empty snapshot."""
    if not path.exists():
        return Snapshot(states=[], offsets={})
    conn = _connect(path, readonly=True)
    try:
        conn.execute("BEGIN")  # WAL: one read transaction sees one committed state of both tables
        try:
            rows = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM technicians").fetchall()
            offsets = dict(
                conn.execute("SELECT partition, next_offset FROM consumed_offsets WHERE topic = ?", (topic,))
            )
        except sqlite3.OperationalError:  # tables not created yet
            return Snapshot(states=[], offsets={})
        finally:
            conn.execute("COMMIT")
        return Snapshot(states=[state_from_row(row) for row in rows], offsets=offsets)
    finally:
        conn.close()


class SqliteProjectionStore:
    """Owns the projector's SQLite file: ``open()`` creates the schema, ``close()`` releases it."""

    def __init__(self, path: Path, topic: str) -> None:
        self.path = path
        self.topic = topic
        self._conn: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="projection-store")

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def open(self) -> None:
        assert self._conn is None, "store already open"
        self._conn = await self._run(self._open_sync)

    def _open_sync(self) -> sqlite3.Connection:
        conn = _connect(self.path)
        conn.executescript(SCHEMA)
        return conn

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._run(conn.close)
        self._executor.shutdown(wait=True)

    async def stored_offsets(self) -> dict[int, int]:
        result: dict[int, int] = await self._run(self._stored_offsets_sync)
        return result

    def _stored_offsets_sync(self) -> dict[int, int]:
        assert self._conn is not None
        rows = self._conn.execute("SELECT partition, next_offset FROM consumed_offsets WHERE topic = ?", (self.topic,))
        return dict(rows.fetchall())

    async def apply_batch(self, events: Sequence[tuple[Event, Position]], next_offsets: dict[int, int]) -> int:
        """Apply ``events`` (in log order) and store ``next_offsets`` in one transaction; returns rows changed."""
        changed: int = await self._run(self._apply_batch_sync, events, next_offsets)
        return changed

    def _apply_batch_sync(self, events: Sequence[tuple[Event, Position]], next_offsets: dict[int, int]) -> int:
        conn = self._conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            keys = {(event.tenant_id, event.technician_id) for event, _ in events}
            current = self._load(conn, keys)
            changed: dict[Key, TechnicianState] = {}
            for event, position in events:
                key = (event.tenant_id, event.technician_id)
                before = current.get(key)
                after = apply(before, event, position)
                if after is not before:
                    current[key] = changed[key] = after
            conn.executemany(_UPSERT, [state_to_row(state) for state in changed.values()])
            conn.executemany(
                "INSERT INTO consumed_offsets (topic, partition, next_offset) VALUES (?, ?, ?) "
                "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
                [(self.topic, partition, offset) for partition, offset in next_offsets.items()],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return len(changed)

    @staticmethod
    def _load(conn: sqlite3.Connection, keys: Iterable[Key]) -> dict[Key, TechnicianState]:
        found: dict[Key, TechnicianState] = {}
        query = f"SELECT {', '.join(_COLUMNS)} FROM technicians WHERE tenant_id = ? AND technician_id = ?"
        for key in keys:
            row = conn.execute(query, key).fetchone()
            if row is not None:
                found[key] = state_from_row(row)
        return found
