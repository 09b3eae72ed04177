"""The projection in SQLite (the default): one file, WAL, blocking calls on one worker thread.

Times are stored as fixed-width UTC ISO text (``store.utc_text``), so range queries compare them as text.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from projector.apply import Key, Position, TechnicianState
from projector.store import (
    EVENT_COLUMNS,
    STATE_COLUMNS,
    BatchResult,
    GenerationChangedError,
    HistoryPoint,
    Snapshot,
    as_datetime,
    event_to_row,
    plan_batch,
    state_from_row,
    state_to_row,
    utc_text,
)
from schemas.events import Event

T = TypeVar("T")
_CHUNK = 500  # ids per IN (...) query


def _tables(generation: int) -> str:
    g = int(generation)
    return f"""
CREATE TABLE IF NOT EXISTS technicians_g{g} (
    tenant_id TEXT NOT NULL, technician_id TEXT NOT NULL,
    name TEXT, name_at TEXT, name_partition INTEGER, name_offset INTEGER,
    status TEXT NOT NULL, status_at TEXT, status_partition INTEGER, status_offset INTEGER,
    latitude REAL, longitude REAL, accuracy_meters REAL, altitude REAL, speed_kmh REAL, heading REAL,
    activity TEXT, job_id TEXT, last_update TEXT, fix_partition INTEGER, fix_offset INTEGER,
    PRIMARY KEY (tenant_id, technician_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events_g{g} (
    event_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, technician_id TEXT NOT NULL, type TEXT NOT NULL,
    recorded_at TEXT NOT NULL, received_at TEXT NOT NULL, partition INTEGER NOT NULL, offset_ INTEGER NOT NULL,
    latitude REAL, longitude REAL, accuracy_meters REAL, altitude REAL, speed_kmh REAL, heading REAL,
    activity TEXT, job_id TEXT, name TEXT, status TEXT
);
CREATE INDEX IF NOT EXISTS events_g{g}_by_technician ON events_g{g} (tenant_id, technician_id, recorded_at);
CREATE INDEX IF NOT EXISTS events_g{g}_by_received ON events_g{g} (received_at);
CREATE TABLE IF NOT EXISTS offsets_g{g} (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
) WITHOUT ROWID;
"""


_META = "CREATE TABLE IF NOT EXISTS projection_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"


def _sql_value(value: Any) -> Any:
    return utc_text(value) if isinstance(value, datetime) else value


class SqliteProjectionStore:
    def __init__(self, path: Path, topic: str) -> None:
        self.path = path
        self.topic = topic
        self._conn: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="projection-sqlite")

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    @property
    def conn(self) -> sqlite3.Connection:
        assert self._conn is not None, "store not open"
        return self._conn

    # lifecycle ---------------------------------------------------------------------------------------------
    async def open(self) -> None:
        assert self._conn is None, "store already open"
        self._conn = await self._run(self._open_sync)

    def _open_sync(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # a committed batch survives power loss, not only a crash
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(_META)
        conn.execute("INSERT OR IGNORE INTO projection_meta (key, value) VALUES ('generation', 1)")
        generation = conn.execute("SELECT value FROM projection_meta WHERE key = 'generation'").fetchone()[0]
        for statement in _tables(generation).split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("COMMIT")
        return conn

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._run(conn.close)
        self._executor.shutdown(wait=True)

    # reads ---------------------------------------------------------------------------------------------------
    def _generation(self) -> int:
        row = self.conn.execute("SELECT value FROM projection_meta WHERE key = 'generation'").fetchone()
        return int(row[0])

    async def generation(self) -> int:
        return await self._run(self._generation)

    async def stored_offsets(self, generation: int | None = None) -> dict[int, int]:
        return await self._run(self._offsets_sync, generation)

    def _offsets_sync(self, generation: int | None) -> dict[int, int]:
        g = self._generation() if generation is None else generation
        rows = self.conn.execute(f"SELECT partition, next_offset FROM offsets_g{g} WHERE topic = ?", (self.topic,))
        return dict(rows.fetchall())

    async def snapshot(self) -> Snapshot:
        return await self._run(self._snapshot_sync)

    def _snapshot_sync(self) -> Snapshot:
        conn = self.conn
        conn.execute("BEGIN")  # WAL: one read transaction sees one committed state of every table
        try:
            g = self._generation()
            rows = conn.execute(f"SELECT {', '.join(STATE_COLUMNS)} FROM technicians_g{g}").fetchall()
            offsets = self._offsets_sync(g)
        finally:
            conn.execute("COMMIT")
        return Snapshot(states=[state_from_row(row) for row in rows], offsets=offsets, generation=g)

    async def history(
        self, tenant_id: str, technician_id: str, start: datetime | None, end: datetime | None, limit: int
    ) -> list[HistoryPoint] | None:
        return await self._run(self._history_sync, tenant_id, technician_id, start, end, limit)

    def _history_sync(
        self, tenant_id: str, technician_id: str, start: datetime | None, end: datetime | None, limit: int
    ) -> list[HistoryPoint] | None:
        conn = self.conn
        conn.execute("BEGIN")
        try:
            g = self._generation()
            known = conn.execute(
                f"SELECT 1 FROM technicians_g{g} WHERE tenant_id = ? AND technician_id = ?", (tenant_id, technician_id)
            ).fetchone()
            if known is None:
                return None
            rows = conn.execute(
                f"SELECT event_id, latitude, longitude, accuracy_meters, altitude, speed_kmh, heading, activity,"
                f" job_id, recorded_at FROM events_g{g} WHERE tenant_id = ? AND technician_id = ?"
                f" AND type = 'location_recorded' AND recorded_at >= ? AND recorded_at < ?"
                f" ORDER BY recorded_at DESC, partition DESC, offset_ DESC LIMIT ?",
                (tenant_id, technician_id, utc_text(start) if start else "", utc_text(end) if end else "~", limit),
            ).fetchall()
        finally:
            conn.execute("COMMIT")
        fields = ("event_id", "latitude", "longitude", "accuracy_meters", "altitude", "speed_kmh", "heading",
                  "activity", "job_id")  # fmt: skip
        return [
            HistoryPoint(**dict(zip(fields, row[:9], strict=True)), recorded_at=as_datetime(row[9])) for row in rows
        ]

    # writes --------------------------------------------------------------------------------------------------
    async def apply_batch(
        self, events: Sequence[tuple[Event, Position]], next_offsets: dict[int, int], generation: int
    ) -> BatchResult:
        return await self._run(self._apply_batch_sync, events, next_offsets, generation)

    def _apply_batch_sync(
        self, events: Sequence[tuple[Event, Position]], next_offsets: dict[int, int], generation: int
    ) -> BatchResult:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if generation < self._generation():  # a rebuild writes the next one before switching
                raise GenerationChangedError(generation)
            g = generation
            fresh = self._fresh(conn, g, events)
            conn.executemany(
                f"INSERT INTO events_g{g} ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))})",
                [tuple(_sql_value(v) for v in event_to_row(event, position)) for event, position in fresh],
            )
            current = self._load(conn, g, {(e.tenant_id, e.technician_id) for e, _ in fresh})
            changed = plan_batch(current, fresh)
            conn.executemany(
                f"INSERT OR REPLACE INTO technicians_g{g} ({', '.join(STATE_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(STATE_COLUMNS))})",
                [tuple(_sql_value(v) for v in state_to_row(state)) for state in changed.values()],
            )
            conn.executemany(
                f"INSERT INTO offsets_g{g} (topic, partition, next_offset) VALUES (?, ?, ?) "
                "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = max(next_offset, excluded.next_offset)",
                [(self.topic, partition, offset) for partition, offset in next_offsets.items()],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return BatchResult(applied=len(fresh), duplicates=len(events) - len(fresh), changed=len(changed))

    @staticmethod
    def _fresh(
        conn: sqlite3.Connection, g: int, events: Sequence[tuple[Event, Position]]
    ) -> list[tuple[Event, Position]]:
        """The events whose event_id is new: neither in the history nor earlier in this batch."""
        ids = list(dict.fromkeys(str(event.event_id) for event, _ in events))
        known: set[str] = set()
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            rows = conn.execute(
                f"SELECT event_id FROM events_g{g} WHERE event_id IN ({', '.join('?' * len(chunk))})", chunk
            )
            known.update(row[0] for row in rows)
        fresh = []
        for event, position in events:
            event_id = str(event.event_id)
            if event_id not in known:
                known.add(event_id)
                fresh.append((event, position))
        return fresh

    @staticmethod
    def _load(conn: sqlite3.Connection, g: int, keys: set[Key]) -> dict[Key, TechnicianState]:
        query = f"SELECT {', '.join(STATE_COLUMNS)} FROM technicians_g{g} WHERE tenant_id = ? AND technician_id = ?"
        found: dict[Key, TechnicianState] = {}
        for key in keys:
            row = conn.execute(query, key).fetchone()
            if row is not None:
                found[key] = state_from_row(row)
        return found

    async def prune_history(self, received_before: datetime) -> int:
        return await self._run(self._prune_sync, received_before)

    def _prune_sync(self, received_before: datetime) -> int:
        g = self._generation()
        cursor = self.conn.execute(f"DELETE FROM events_g{g} WHERE received_at < ?", (utc_text(received_before),))
        return cursor.rowcount

    # generations (rebuild) -----------------------------------------------------------------------------------
    async def new_generation(self) -> int:
        return await self._run(self._new_generation_sync)

    def _new_generation_sync(self) -> int:
        g = self._generation() + 1
        self.conn.execute("BEGIN IMMEDIATE")
        for table in ("technicians", "events", "offsets"):
            self.conn.execute(f"DROP TABLE IF EXISTS {table}_g{g}")  # a rebuild that died half-way
        for statement in _tables(g).split(";"):
            if statement.strip():
                self.conn.execute(statement)
        self.conn.execute("COMMIT")
        return g

    async def switch_generation(self, generation: int) -> int:
        """Make ``generation`` current in one transaction; returns the previous one."""
        return await self._run(self._switch_sync, generation)

    def _switch_sync(self, generation: int) -> int:
        self.conn.execute("BEGIN IMMEDIATE")
        previous = self._generation()
        self.conn.execute("UPDATE projection_meta SET value = ? WHERE key = 'generation'", (generation,))
        self.conn.execute("COMMIT")
        return previous

    async def drop_generation(self, generation: int) -> None:
        await self._run(self._drop_sync, generation)

    def _drop_sync(self, generation: int) -> None:
        assert generation != self._generation(), "refusing to drop the current generation"
        for table in ("technicians", "events", "offsets"):
            self.conn.execute(f"DROP TABLE IF EXISTS {table}_g{int(generation)}")
