"""The projection in SQLite (the default): one file, WAL, blocking calls on one worker thread.

Times are stored as integer microseconds since the epoch (``store.to_micros``). The history is kept in chunks
(``history_chunks``): a technician's events of one batch and day in one row. A retry is recognised by its
identity ``(recorded_at, event_id)`` within its technician: only events no newer than the technician's newest
stored one can be retries, and only for those are the chunks of their time range read back.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from domain.fix_quality import QualityFilter
from domain.position import Position
from domain.projection import Key, TechnicianState
from domain.visits import Crossing
from projector.history_chunks import ChunkKey, Item, chunk_key, item_of, judged, newest_fixes, pack, unpack
from projector.store import (
    CROSSING_COLUMNS,
    SCHEMA_VERSION,
    STATE_COLUMNS,
    STAY_COLUMNS,
    STAY_KEY_COLUMNS,
    BatchResult,
    ConcurrentWriteError,
    GenerationChangedError,
    HistoryPoint,
    Snapshot,
    StayChange,
    StayQuery,
    StayRecord,
    beyond_stored,
    fix_column_definitions,
    from_micros,
    marks,
    plan_batch,
    schema_upgrade,
    split_derived,
    state_from_row,
    state_to_row,
    stay_record,
    to_micros,
)
from schemas.events import MARK_EVENTS, Event, Fact

T = TypeVar("T")
log = logging.getLogger(__name__)


_TYPES = {"float": "REAL", "str": "TEXT"}  # a fix value's column type, by its kind


def _tables(generation: int) -> str:
    g = int(generation)
    return f"""
CREATE TABLE IF NOT EXISTS technicians_g{g} (
    tenant_id TEXT NOT NULL, technician_id TEXT NOT NULL,
    name TEXT, name_at INTEGER, name_partition INTEGER, name_offset INTEGER,
    status TEXT NOT NULL, status_at INTEGER, status_partition INTEGER, status_offset INTEGER,
    {fix_column_definitions(_TYPES)}, last_update INTEGER, fix_partition INTEGER, fix_offset INTEGER,
    stay_subject TEXT, stay_started_at INTEGER, stay_ended_at INTEGER, offline_since INTEGER, offline_reason TEXT,
    PRIMARY KEY (tenant_id, technician_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history_g{g} (
    tenant_id TEXT NOT NULL, technician_id TEXT NOT NULL,
    first_at INTEGER NOT NULL, last_at INTEGER NOT NULL, events INTEGER NOT NULL, items BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS history_g{g}_by_technician ON history_g{g} (tenant_id, technician_id, last_at);
CREATE INDEX IF NOT EXISTS history_g{g}_by_time ON history_g{g} (last_at);
CREATE TABLE IF NOT EXISTS offsets_g{g} (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS crossings_g{g} (
    event_id BLOB PRIMARY KEY, tenant_id TEXT NOT NULL, technician_id TEXT NOT NULL, geofence_id TEXT NOT NULL,
    job_id TEXT, entered INTEGER NOT NULL, at INTEGER NOT NULL, partition INTEGER NOT NULL, offset_ INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS crossings_g{g}_by_job ON crossings_g{g} (tenant_id, job_id);
CREATE TABLE IF NOT EXISTS stays_g{g} (
    tenant_id TEXT NOT NULL, technician_id TEXT NOT NULL, subject TEXT NOT NULL, started_at INTEGER NOT NULL,
    kind TEXT NOT NULL, ended_at INTEGER, data TEXT NOT NULL, event_id BLOB NOT NULL, partition INTEGER NOT NULL,
    offset_ INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, technician_id, subject, started_at)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS stays_g{g}_by_start ON stays_g{g} (tenant_id, subject, started_at, technician_id);
"""


_META = "CREATE TABLE IF NOT EXISTS projection_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
_TABLES = ("technicians", "history", "offsets", "crossings", "stays", "events")  # events_g*: the history of schema 1
_UPSERT_STATE = (
    "INSERT OR REPLACE INTO technicians_g{g} (" + ", ".join(STATE_COLUMNS) + ") "
    "VALUES (" + ", ".join("?" * len(STATE_COLUMNS)) + ")"
)

_UPSERT_STAY = (
    "INSERT INTO stays_g{g} (" + ", ".join(STAY_COLUMNS) + ") VALUES (" + ", ".join("?" * len(STAY_COLUMNS)) + ") "
    "ON CONFLICT ("
    + ", ".join(STAY_KEY_COLUMNS)
    + ") DO UPDATE SET "
    + ", ".join(f"{column} = excluded.{column}" for column in STAY_COLUMNS[4:])
)
# The end of an offline period keeps what its start said (silent_seconds, reason): the data are merged.
_MERGE_STAY = _UPSERT_STAY.replace("data = excluded.data", "data = json_patch(data, excluded.data)")
_DELETE_STAY = "DELETE FROM stays_g{g} WHERE " + " AND ".join(f"{column} = ?" for column in STAY_KEY_COLUMNS)


Entry = tuple[Item, Event, Position]


def group_by_technician(events: Sequence[tuple[Event, Position]]) -> dict[Key, list[Entry]]:
    """The batch per technician, in log order, each event with its history item; a repeat within it is dropped."""
    batch: dict[Key, list[Entry]] = {}
    seen: set[tuple[str, str, int, str]] = set()
    for event, position in events:
        item = item_of(event, position)
        scoped = (event.tenant_id, event.technician_id, item[0], item[1])
        if scoped not in seen:
            seen.add(scoped)
            batch.setdefault(scoped[:2], []).append((item, event, position))
    return batch


@dataclass
class _BatchReads:
    offsets: dict[int, int]  # the stored next offsets of the batch's partitions when it was read
    states: dict[Key, TechnicianState]
    identities: dict[Key, set[ChunkKey]] = field(default_factory=dict)  # stored, where events might repeat them


class SqliteProjectionStore:
    def __init__(self, path: Path, topic: str, cache_mib: int = 256) -> None:
        self.path = path
        self.topic = topic
        self.cache_mib = cache_mib
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
        # The history's indexes are updated at random places; a page cache that holds them saves re-reading pages.
        conn.execute(f"PRAGMA cache_size=-{int(self.cache_mib) * 1024}")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(_META)
        conn.execute("INSERT OR IGNORE INTO projection_meta (key, value) VALUES ('generation', 1)")
        conn.execute("INSERT OR IGNORE INTO projection_meta (key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))
        generation = conn.execute("SELECT value FROM projection_meta WHERE key = 'generation'").fetchone()[0]
        schema = conn.execute("SELECT value FROM projection_meta WHERE key = 'schema'").fetchone()[0]
        upgraded, drops = schema_upgrade(schema, generation, _TABLES)
        if upgraded != generation:
            for statement in drops:
                conn.execute(statement)
            generation = upgraded
            conn.execute("UPDATE projection_meta SET value = ? WHERE key = 'generation'", (generation,))
            conn.execute("UPDATE projection_meta SET value = ? WHERE key = 'schema'", (SCHEMA_VERSION,))
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
        return Snapshot(states=[state_from_row(row, from_micros) for row in rows], offsets=offsets, generation=g)

    async def history(
        self,
        tenant_id: str,
        technician_id: str,
        start: datetime | None,
        end: datetime | None,
        limit: int,
        quality: QualityFilter = "good",
    ) -> list[HistoryPoint] | None:
        return await self._run(self._history_sync, tenant_id, technician_id, start, end, limit, quality)

    def _history_sync(
        self,
        tenant_id: str,
        technician_id: str,
        start: datetime | None,
        end: datetime | None,
        limit: int,
        quality: QualityFilter,
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
            chunks = conn.execute(
                f"SELECT last_at, items FROM history_g{g} WHERE tenant_id = ? AND technician_id = ? AND last_at >= ?"
                f" ORDER BY last_at DESC",
                (tenant_id, technician_id, to_micros(start) if start else -(2**63)),
            )
            return newest_fixes(
                chunks, to_micros(start) if start else -(2**63), to_micros(end) if end else 2**63 - 1, limit, quality
            )
        finally:
            conn.execute("COMMIT")

    async def current(self, tenant_id: str, technician_id: str) -> TechnicianState | None:
        return await self._run(self._current_sync, tenant_id, technician_id)

    def _current_sync(self, tenant_id: str, technician_id: str) -> TechnicianState | None:
        conn = self.conn
        conn.execute("BEGIN")
        try:
            g = self._generation()
            row = conn.execute(
                f"SELECT {', '.join(STATE_COLUMNS)} FROM technicians_g{g} WHERE tenant_id = ? AND technician_id = ?",
                (tenant_id, technician_id),
            ).fetchone()
        finally:
            conn.execute("COMMIT")
        return None if row is None else state_from_row(row, from_micros)

    async def crossings(self, tenant_id: str, job_id: str) -> list[Crossing]:
        return await self._run(self._crossings_sync, tenant_id, job_id)

    def _crossings_sync(self, tenant_id: str, job_id: str) -> list[Crossing]:
        conn = self.conn
        conn.execute("BEGIN")
        try:
            g = self._generation()
            rows = conn.execute(
                f"SELECT technician_id, geofence_id, entered, at, partition, offset_ FROM crossings_g{g}"
                f" WHERE tenant_id = ? AND job_id = ?",
                (tenant_id, job_id),
            ).fetchall()
        finally:
            conn.execute("COMMIT")
        return [Crossing(t, f, bool(e), from_micros(at), p, o) for t, f, e, at, p, o in rows]

    async def stays(self, query: StayQuery) -> list[StayRecord]:
        return await self._run(self._stays_sync, query)

    def _stays_sync(self, query: StayQuery) -> list[StayRecord]:
        where = ["tenant_id = ?", "subject = ?", "started_at >= ?", "started_at < ?"]
        args: list[Any] = [query.tenant_id, query.subject, to_micros(query.start), to_micros(query.end)]
        if query.technician_id is not None:
            where.append("technician_id = ?")
            args.append(query.technician_id)
        if query.after is not None:
            where.append("(started_at, technician_id) > (?, ?)")
            args.extend((to_micros(query.after[0]), query.after[1]))
        conn = self.conn
        conn.execute("BEGIN")
        try:
            g = self._generation()
            rows = conn.execute(
                f"SELECT technician_id, subject, kind, started_at, ended_at, data FROM stays_g{g}"
                f" WHERE {' AND '.join(where)} ORDER BY started_at, technician_id LIMIT ?",
                (*args, query.limit),
            ).fetchall()
        finally:
            conn.execute("COMMIT")
        return [
            stay_record(t, subject, kind, from_micros(start), from_micros(end) if end is not None else None, data)
            for t, subject, kind, start, end, data in rows
        ]

    # writes ---------------------------------------------------------------------------------------------------
    async def apply_batch(
        self,
        events: Sequence[tuple[Event, Position]],
        next_offsets: dict[int, int],
        generation: int,
        derived: Sequence[tuple[Fact, Position]] = (),
    ) -> BatchResult:
        """Read what the batch needs, plan it on the event loop, write it in one transaction.

        Only SQL runs on the store's thread: Python work there would contend for the GIL with the consumer. The
        reads happen before the write transaction, so the write checks that the batch's partitions still have
        the offsets read with them; another writer in between (two projectors during a rebalance) makes it
        raise ``ConcurrentWriteError`` and change nothing.
        """
        g = generation
        batch = group_by_technician(events)
        marked = {(event.tenant_id, event.technician_id) for event, _ in derived if isinstance(event, MARK_EVENTS)}
        read = await self._run(self._read_for_batch, g, batch, list(next_offsets), marked)
        unapplied = beyond_stored(events, read.offsets)
        if len(unapplied) < len(events):  # a seek raced a commit: some records were applied already
            batch = group_by_technician(unapplied)
        derived = beyond_stored(derived, read.offsets)
        crossed, stays = split_derived(derived, to_micros, _id_bytes)
        changed: dict[Key, TechnicianState] = {}
        rows: list[tuple[Any, ...]] = []
        fresh = 0
        for key, entries in batch.items():
            known = read.identities.get(key)
            if known:
                entries = [entry for entry in entries if chunk_key(entry[0]) not in known]
            plan = plan_batch(read.states, ((event, position) for _, event, position in entries))
            changed.update(plan.changed)
            flags = plan.flags
            items = (judged(item, flags[position]) if position in flags else item for item, _, position in entries)
            rows.extend((*key, c.first_at, c.last_at, c.count, c.items) for c in pack(items))
            fresh += len(entries)
        if marked:
            changed.update(plan_batch(read.states, (), marks(derived)).changed)
        states = [state_to_row(state, to_micros) for state in changed.values()]
        await self._run(self._write_batch, g, read.offsets, rows, states, next_offsets, crossed, stays)
        return BatchResult(applied=fresh, duplicates=len(events) - fresh, changed=len(changed))

    def _read_for_batch(
        self, g: int, batch: dict[Key, list[Entry]], partitions: list[int], marked: set[Key]
    ) -> _BatchReads:
        """In one read transaction: each technician's state (those of ``batch`` and ``marked``) and the stored
        identities its events might repeat."""
        conn = self.conn
        conn.execute("BEGIN")
        try:
            if g < self._generation():  # switched (and its tables maybe dropped) by a rebuild
                raise GenerationChangedError(g)
            reads = _BatchReads(offsets=self._offsets_sync(g), states=self._load(conn, g, set(batch) | marked))
            for key, entries in batch.items():
                newest = conn.execute(
                    f"SELECT max(last_at) FROM history_g{g} WHERE tenant_id = ? AND technician_id = ?", key
                ).fetchone()[0]
                if newest is None:
                    continue  # nothing stored: nothing to repeat
                maybe_retries = [item[0] for item, _, _ in entries if item[0] <= newest]
                if maybe_retries:
                    reads.identities[key] = {
                        chunk_key(item)
                        for (packed,) in conn.execute(
                            f"SELECT items FROM history_g{g} WHERE tenant_id = ? AND technician_id = ?"
                            f" AND last_at >= ? AND first_at <= ?",
                            (*key, min(maybe_retries), max(maybe_retries)),
                        )
                        for item in unpack(packed)
                    }
        finally:
            conn.execute("COMMIT")
        reads.offsets = {p: o for p, o in reads.offsets.items() if p in partitions}
        return reads

    def _write_batch(
        self,
        g: int,
        read_offsets: dict[int, int],
        history: list[tuple[Any, ...]],
        states: list[tuple[Any, ...]],
        next_offsets: dict[int, int],
        crossings: list[tuple[Any, ...]],
        stays: Sequence[StayChange] = (),
    ) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if g < self._generation():  # a rebuild writes the next one before switching
                raise GenerationChangedError(g)
            stored = self._offsets_sync(g)
            if any(stored.get(partition) != read_offsets.get(partition) for partition in next_offsets):
                raise ConcurrentWriteError(f"offsets moved from {read_offsets} to {stored} while the batch was planned")
            conn.executemany(
                f"INSERT INTO history_g{g} (tenant_id, technician_id, first_at, last_at, events, items)"
                f" VALUES (?, ?, ?, ?, ?, ?)",
                history,
            )
            conn.executemany(_UPSERT_STATE.format(g=g), states)
            conn.executemany(  # a crossing repeated by a geofence processor that crashed is stored once
                f"INSERT OR IGNORE INTO crossings_g{g} ({', '.join(CROSSING_COLUMNS)})"
                f" VALUES ({', '.join('?' * len(CROSSING_COLUMNS))})",
                crossings,
            )
            for change in stays:  # in log order: a stop's last event wins, a retraction deletes it
                if change.row is None:
                    conn.execute(_DELETE_STAY.format(g=g), change.key)
                else:
                    conn.execute((_MERGE_STAY if change.merge else _UPSERT_STAY).format(g=g), change.row)
            conn.executemany(
                f"INSERT INTO offsets_g{g} (topic, partition, next_offset) VALUES (?, ?, ?) "
                "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = max(next_offset, excluded.next_offset)",
                [(self.topic, partition, offset) for partition, offset in next_offsets.items()],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _load(conn: sqlite3.Connection, g: int, keys: set[Key]) -> dict[Key, TechnicianState]:
        query = f"SELECT {', '.join(STATE_COLUMNS)} FROM technicians_g{g} WHERE tenant_id = ? AND technician_id = ?"
        found: dict[Key, TechnicianState] = {}
        for key in keys:
            row = conn.execute(query, key).fetchone()
            if row is not None:
                found[key] = state_from_row(row, from_micros)
        return found

    async def prune_history(self, recorded_before: datetime) -> int:
        return await self._run(self._prune_sync, recorded_before)

    def _prune_sync(self, recorded_before: datetime) -> int:
        """Drop the chunks whose newest fix is older than ``recorded_before``; returns the events dropped."""
        g = self._generation()
        cutoff = to_micros(recorded_before)
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            dropped = self.conn.execute(
                f"SELECT coalesce(sum(events), 0) FROM history_g{g} WHERE last_at < ?", (cutoff,)
            ).fetchone()[0]
            self.conn.execute(f"DELETE FROM history_g{g} WHERE last_at < ?", (cutoff,))
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return int(dropped)

    # generations (rebuild) -----------------------------------------------------------------------------------
    async def new_generation(self) -> int:
        return await self._run(self._new_generation_sync)

    def _new_generation_sync(self) -> int:
        g = self._generation() + 1
        self.conn.execute("BEGIN IMMEDIATE")
        for table in _TABLES:
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
        for table in _TABLES:
            self.conn.execute(f"DROP TABLE IF EXISTS {table}_g{int(generation)}")


def _id_bytes(event_id: uuid.UUID) -> bytes:
    return event_id.bytes
