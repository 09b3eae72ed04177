"""What the derived-facts processor remembers, in SQLite beside its offsets: for each technician, the fences it is
inside and its latest good fix's device time and place, and its stops-and-trips track (``domain.stays.StayTrack``:
the rule's state at the start of the track's tail, in ``stays``, and the tail's fixes in ``stay_tail``, one row per
technician and batch holding that batch's fixes packed: a row per fix cost 7 µs a fix to insert); for each
partition, the next offset to read. All change in one transaction per batch, after the batch's events were
acknowledged by Kafka: a crash before the commit repeats the batch from the state before it, which repeats the same
events with the same event ids (deduplicated by the consumers), and a crash after it repeats nothing.

A commit is a list of ``Write`` (a row put or deleted): the same list goes to the store's changelog topic before it
is applied here (``geofencer/changelog.py``), so the rows of a partition can be rebuilt anywhere
(``replace_partition``) when the partition moves to another instance (docs/scale-out.md). Every row belongs to one
partition of the location topic: its tenant's (``domain.partitioning.tenant_partition``), or the partition it names.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from itertools import chain, groupby
from pathlib import Path
from typing import Any

from domain.geofencing import TechnicianFences
from domain.partitioning import tenant_partition
from domain.presence import PartitionClock, Presence
from domain.stays import (
    FactKey,
    Point,
    RuleState,
    StayFact,
    StayTrack,
    TailAdditions,
    facts_from_json,
    facts_to_json,
    state_from_json,
    state_to_json,
)
from schemas.tenant_rules import StayRules

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
CREATE TABLE IF NOT EXISTS stays (
    tenant_id TEXT NOT NULL,
    technician_id TEXT NOT NULL,
    base TEXT NOT NULL,
    settled TEXT NOT NULL,
    horizon TEXT,
    PRIMARY KEY (tenant_id, technician_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stay_tail (
    tenant_id TEXT NOT NULL,
    technician_id TEXT NOT NULL,
    last_at REAL NOT NULL,
    points BLOB NOT NULL,
    chunk INTEGER
);
CREATE INDEX IF NOT EXISTS stay_tail_by_technician ON stay_tail (tenant_id, technician_id, last_at);
CREATE TABLE IF NOT EXISTS presence (
    tenant_id TEXT NOT NULL,
    technician_id TEXT NOT NULL,
    heard_at REAL NOT NULL,
    last_seen REAL NOT NULL,
    fix_id TEXT NOT NULL,
    partition INTEGER NOT NULL,
    online INTEGER NOT NULL,
    ended TEXT,
    PRIMARY KEY (tenant_id, technician_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS clocks (partition INTEGER PRIMARY KEY, watched REAL NOT NULL, at REAL);
CREATE TABLE IF NOT EXISTS owners (partition INTEGER PRIMARY KEY, member TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS changelog (partition INTEGER PRIMARY KEY, end_offset INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS identity (id TEXT NOT NULL);
"""
# The changelog and identity tables are this store's own, never written to the changelog: how far into each changelog
# partition its rows of that partition are (the changelog's end offset after the last write applied here), and the
# store's id (its group member's default id).

ROW_KEYS: dict[str, tuple[str, ...]] = {  # each table's primary key: what a changelog record is keyed by
    "technicians": ("tenant_id", "technician_id"),
    "stays": ("tenant_id", "technician_id"),
    "stay_tail": ("tenant_id", "technician_id", "chunk"),  # chunk: the next offset after the batch that added it
    "presence": ("tenant_id", "technician_id"),
    "clocks": ("partition",),
    "offsets": ("partition",),
    "owners": ("partition",),  # the member that took the partition last: written when it takes it (a fence)
}
_KEY_COLUMNS = {"technicians": (0, 1), "stays": (0, 1), "stay_tail": (0, 1, 4), "presence": (0, 1)}
_BY_PARTITION = ("clocks", "offsets", "owners")  # keyed by the partition itself; the other tables by tenant

Key = tuple[str, str]
Row = tuple[str, str, str | None, str, float | None, float | None]
TailRow = tuple[str, str, float, bytes, int]  # a technician's fixes added to its track's tail by a batch, its chunk


@dataclass(frozen=True, slots=True)
class Write:
    """One row of ``table`` put (``row``) or deleted (``row is None``), by its primary key: the unit a commit is made
    of, here and in the changelog."""

    table: str
    key: tuple[Any, ...]
    row: tuple[Any, ...] | None

    @staticmethod
    def put(table: str, row: Sequence[Any]) -> Write:
        columns = _KEY_COLUMNS.get(table, (0,))
        return Write(table, tuple(row[i] for i in columns), tuple(row))

    def partition(self, partition_count: int) -> int:
        """The location topic's partition the row belongs to."""
        if self.table in _BY_PARTITION:
            return int(self.key[0])
        return tenant_partition(str(self.key[0]), partition_count)


@dataclass(frozen=True, slots=True)
class StayBase:
    """A track's stored start (``StayTrack.base``, ``settled``, ``horizon``), written when its tail is cut."""

    tenant_id: str
    technician_id: str
    base: RuleState
    settled: dict[FactKey, StayFact]
    horizon: Point | None

    def row(self) -> tuple[str, str, str, str, str | None]:
        horizon = json.dumps(list(self.horizon)) if self.horizon is not None else None
        return (
            self.tenant_id,
            self.technician_id,
            json.dumps(state_to_json(self.base)),
            json.dumps(facts_to_json(self.settled)),
            horizon,
        )


@dataclass(slots=True)
class Changes:
    """What a batch changed, to commit once its events are acknowledged."""

    technicians: list[Row] = field(default_factory=list)
    tail: TailAdditions = field(default_factory=TailAdditions)  # the fixes each technician's track took
    bases: list[StayBase] = field(default_factory=list)
    # Rows made as the batch is evaluated: the presences and clocks go on changing before the batch is committed.
    presence: dict[Key, tuple[str, str, float, float, str, int, int, str | None]] = field(default_factory=dict)
    clocks: list[tuple[int, float, float | None]] = field(default_factory=list)

    def add_presence(self, key: Key, presence: Presence) -> None:
        self.presence[key] = (
            *key,
            presence.heard_at,
            presence.last_seen,
            str(presence.fix_id),
            presence.partition,
            int(presence.online),
            str(presence.ended) if presence.ended is not None else None,
        )

    def set_clocks(self, clocks: dict[int, PartitionClock]) -> None:
        self.clocks = [(partition, clock.watched, clock.at) for partition, clock in clocks.items()]

    def tail_rows(self, next_offsets: dict[int, int]) -> list[TailRow]:
        """One row per technician: its newest fix's time (for the cut), the fixes packed as doubles (exactly as they
        were), and its chunk (the batch's next offset of the partition its fixes came from: unique per technician,
        whoever made it); built on the committer's thread."""
        return [
            (
                *key,
                max(point.at for point in points),
                array("d", chain.from_iterable(points)).tobytes(),
                next_offsets[self.tail.partition[key]],
            )
            for key, points in self.tail.points.items()
        ]


def _fences(inside: str, latest: str | None, latitude: float | None, longitude: float | None) -> TechnicianFences:
    fences = TechnicianFences(set(json.loads(inside)), datetime.fromisoformat(latest) if latest else None)
    if latitude is not None and longitude is not None:
        fences.latitude, fences.longitude = latitude, longitude
    return fences


class GeofencerState:
    def __init__(self, path: Path, partition_count: int = 1) -> None:
        self.path = path
        self.partition_count = partition_count  # the location topic's: which rows belong to which partition
        self._db: sqlite3.Connection | None = None

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.create_function(
            "tenant_partition", 1, partial(tenant_partition, partition_count=self.partition_count), deterministic=True
        )
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(technicians)")}
        for added in ("latitude", "longitude"):  # a state stored before the last good fix's place was kept
            if added not in columns:
                self._db.execute(f"ALTER TABLE technicians ADD COLUMN {added} REAL")
        if "chunk" not in {row[1] for row in self._db.execute("PRAGMA table_info(stay_tail)")}:
            self._db.execute("ALTER TABLE stay_tail ADD COLUMN chunk INTEGER")  # a store from before the changelog
        self._db.execute("UPDATE stay_tail SET chunk = -rowid WHERE chunk IS NULL")  # unique, below every offset
        self._db.execute(
            "CREATE UNIQUE INDEX IF NOT EXISTS stay_tail_chunks ON stay_tail (tenant_id, technician_id, chunk)"
        )

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "state not open"
        return self._db

    def _select(self, table: str, partition: int | None, columns: str = "*") -> sqlite3.Cursor:
        """The rows of ``table`` (of ``partition`` only, when given)."""
        if partition is None:
            return self.db.execute(f"SELECT {columns} FROM {table}")
        return self.db.execute(f"SELECT {columns} FROM {table} WHERE {self._of_partition(table)}", (partition,))

    def load(self, partition: int | None = None) -> tuple[dict[Key, TechnicianFences], dict[int, int]]:
        technicians = {
            (tenant, technician): _fences(inside, latest, latitude, longitude)
            for tenant, technician, latest, inside, latitude, longitude in self._select(
                "technicians", partition, "tenant_id, technician_id, latest, inside, latitude, longitude"
            )
        }
        offsets = dict(self._select("offsets", partition, "partition, next_offset").fetchall())
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

    def load_tracks(
        self,
        rules_of: Callable[[str], StayRules],
        max_speed_of: Callable[[str], float],
        partition: int | None = None,
    ) -> dict[Key, StayTrack]:
        """Every stored track (of ``partition``), its tail replayed from its base (``StayTrack.restore``)."""
        tails: dict[Key, list[Point]] = {}
        for tenant, technician, packed in self._select("stay_tail", partition, "tenant_id, technician_id, points"):
            values = array("d")
            values.frombytes(packed)
            found = tails.setdefault((tenant, technician), [])
            found.extend(Point(*values[i : i + 3]) for i in range(0, len(values), 3))
        bases = {
            (tenant, technician): (base, settled, horizon)
            for tenant, technician, base, settled, horizon in self._select("stays", partition)
        }
        tracks: dict[Key, StayTrack] = {}
        for key in tails.keys() | bases.keys():
            stored = bases.get(key)
            if stored is None:
                tracks[key] = StayTrack.restore(
                    RuleState(), {}, None, tails[key], rules_of(key[0]), max_speed_of(key[0])
                )
                continue
            base, settled, horizon = stored
            cut = Point(*json.loads(horizon)) if horizon is not None else None
            tracks[key] = StayTrack.restore(
                state_from_json(json.loads(base)),
                facts_from_json(json.loads(settled)),
                cut,
                [point for point in tails.get(key, ()) if cut is None or point > cut],  # a row may straddle the cut
                rules_of(key[0]),
                max_speed_of(key[0]),
            )
        return tracks

    def load_presence(self, partition: int | None = None) -> tuple[dict[int, PartitionClock], dict[Key, Presence]]:
        clocks = {number: PartitionClock(watched, at) for number, watched, at in self._select("clocks", partition)}
        presences = {
            (tenant, technician): Presence(
                heard_at, last_seen, uuid.UUID(fix_id), number, bool(online), uuid.UUID(ended) if ended else None
            )
            for tenant, technician, heard_at, last_seen, fix_id, number, online, ended in self._select(
                "presence", partition
            )
        }
        return clocks, presences

    def writes(self, changes: Changes, next_offsets: dict[int, int]) -> list[Write]:
        """What committing ``changes`` and ``next_offsets`` writes, in order: the rows a tail cut drops are read from
        the store (on the committer's thread, before the write is applied)."""
        writes = [Write("technicians", row[:2], row) for row in changes.technicians]
        tail = changes.tail_rows(next_offsets)
        writes.extend(Write("stay_tail", (row[0], row[1], row[4]), row) for row in tail)
        for base in changes.bases:  # the tail cut: its older fixes are in the base now
            key = (base.tenant_id, base.technician_id)
            writes.append(Write("stays", key, base.row()))
            if base.horizon is None:
                continue
            dropped = (
                {  # the rows whose every fix is older than the cut
                    chunk
                    for (chunk,) in self.db.execute(
                        "SELECT chunk FROM stay_tail WHERE tenant_id = ? AND technician_id = ? AND last_at < ?",
                        (*key, base.horizon.at),
                    )
                }
                | {row[4] for row in tail if row[:2] == key and row[2] < base.horizon.at}
            )
            writes.extend(Write("stay_tail", (*key, chunk), None) for chunk in sorted(dropped))
        writes.extend(Write("presence", row[:2], row) for row in changes.presence.values())
        writes.extend(Write("clocks", row[:1], row) for row in changes.clocks)
        writes.extend(Write("offsets", (partition,), (partition, offset)) for partition, offset in next_offsets.items())
        return writes

    def commit(self, changes: Changes, next_offsets: dict[int, int]) -> None:
        """One transaction; from one thread at a time (the processor's committer)."""
        self.apply(self.writes(changes, next_offsets))

    def apply(self, writes: Sequence[Write], changelog_ends: dict[int, int] | None = None) -> None:
        """``writes`` in one transaction, with how far into each changelog partition the store now is."""
        db = self.db
        db.execute("BEGIN")
        try:
            self._apply(writes)
            db.executemany("INSERT OR REPLACE INTO changelog VALUES (?, ?)", list((changelog_ends or {}).items()))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _apply(self, writes: Sequence[Write]) -> None:
        for (table, deleting), run in groupby(writes, key=lambda write: (write.table, write.row is None)):
            if deleting:
                where = " AND ".join(f"{column} = ?" for column in ROW_KEYS[table])
                self.db.executemany(f"DELETE FROM {table} WHERE {where}", [write.key for write in run])
            else:
                rows = [write.row for write in run if write.row is not None]
                places = ", ".join("?" * len(rows[0]))
                self.db.executemany(f"INSERT OR REPLACE INTO {table} VALUES ({places})", rows)

    def _of_partition(self, table: str) -> str:
        return "partition = ?" if table in _BY_PARTITION else "tenant_partition(tenant_id) = ?"

    def replace_partition(self, partition: int, writes: Sequence[Write], changelog_end: int) -> None:
        """The rows of ``partition`` become what ``writes`` (its changelog, read to ``changelog_end``) make of
        nothing: one transaction, so a crash leaves the rows before or after."""
        db = self.db
        db.execute("BEGIN")
        try:
            for table in ROW_KEYS:
                db.execute(f"DELETE FROM {table} WHERE {self._of_partition(table)}", (partition,))
            self._apply(writes)
            db.execute("INSERT OR REPLACE INTO changelog VALUES (?, ?)", (partition, changelog_end))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def partition_writes(self, partition: int) -> list[Write]:
        """Every row of ``partition`` as a write: what a store from before the changelog seeds it with."""
        found: list[Write] = []
        for table in ROW_KEYS:
            rows = self.db.execute(f"SELECT * FROM {table} WHERE {self._of_partition(table)}", (partition,))
            found.extend(Write.put(table, row) for row in rows)
        return found

    def identity(self) -> str:
        """This store's id, made with it."""
        found = self.db.execute("SELECT id FROM identity").fetchone()
        if found is None:
            found = (f"geofencer-{uuid.uuid4()}",)
            self.db.execute("INSERT INTO identity VALUES (?)", found)
        return str(found[0])

    def stored_offsets(self) -> dict[int, int]:
        """The next offset to read, per partition of the location topic."""
        return dict(self.db.execute("SELECT partition, next_offset FROM offsets").fetchall())

    def changelog_ends(self) -> dict[int, int]:
        """How far into each changelog partition this store's rows of it are."""
        return dict(self.db.execute("SELECT partition, end_offset FROM changelog").fetchall())
