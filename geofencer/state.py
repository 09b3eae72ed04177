"""What the derived-facts processor remembers, in SQLite beside its offsets: for each technician, the fences it is
inside and its latest good fix's device time and place, and its stops-and-trips track (``domain.stays.StayTrack``:
the rule's state at the start of the track's tail, in ``stays``, and the tail's fixes in ``stay_tail``, one row per
technician and batch holding that batch's fixes packed: a row per fix cost 7 µs a fix to insert); for each
partition, the next offset to read. All change in one transaction per batch, after the batch's events were
acknowledged by Kafka: a crash before the commit repeats the batch from the state before it, which repeats the same
events with the same event ids (deduplicated by the consumers), and a crash after it repeats nothing.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain
from pathlib import Path

from domain.geofencing import TechnicianFences
from domain.presence import PartitionClock, Presence
from domain.stays import (
    FactKey,
    Point,
    RuleState,
    StayFact,
    StayTrack,
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
    points BLOB NOT NULL
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
"""

Key = tuple[str, str]
Row = tuple[str, str, str | None, str, float | None, float | None]
TailRow = tuple[str, str, float, bytes]  # a technician's fixes added to its track's tail by a batch


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
    tail: dict[Key, list[Point]] = field(default_factory=dict)  # the fixes each technician's track took
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

    def add_to_tail(self, key: Key, point: Point) -> None:
        held = self.tail.get(key)
        if held is None:
            self.tail[key] = [point]
        else:
            held.append(point)

    def tail_rows(self) -> list[TailRow]:
        """One row per technician: its newest fix's time (for the cut) and the fixes packed as doubles (exactly as
        they were); built on the committer's thread."""
        return [
            (*key, max(point.at for point in points), array("d", chain.from_iterable(points)).tobytes())
            for key, points in self.tail.items()
        ]


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

    def load_tracks(
        self, rules_of: Callable[[str], StayRules], max_speed_of: Callable[[str], float]
    ) -> dict[Key, StayTrack]:
        """Every stored track, its tail replayed from its base (``StayTrack.restore``)."""
        tails: dict[Key, list[Point]] = {}
        for tenant, technician, _, packed in self.db.execute("SELECT * FROM stay_tail"):
            values = array("d")
            values.frombytes(packed)
            found = tails.setdefault((tenant, technician), [])
            found.extend(Point(*values[i : i + 3]) for i in range(0, len(values), 3))
        bases = {
            (tenant, technician): (base, settled, horizon)
            for tenant, technician, base, settled, horizon in self.db.execute("SELECT * FROM stays")
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

    def load_presence(self) -> tuple[dict[int, PartitionClock], dict[Key, Presence]]:
        clocks = {
            partition: PartitionClock(watched, at) for partition, watched, at in self.db.execute("SELECT * FROM clocks")
        }
        presences = {
            (tenant, technician): Presence(
                heard_at, last_seen, uuid.UUID(fix_id), partition, bool(online), uuid.UUID(ended) if ended else None
            )
            for tenant, technician, heard_at, last_seen, fix_id, partition, online, ended in self.db.execute(
                "SELECT * FROM presence"
            )
        }
        return clocks, presences

    def commit(self, changes: Changes, next_offsets: dict[int, int]) -> None:
        """One transaction; from one thread at a time (the processor's committer)."""
        db = self.db
        db.execute("BEGIN")
        try:
            db.executemany(
                "INSERT OR REPLACE INTO technicians (tenant_id, technician_id, latest, inside, latitude, longitude)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                changes.technicians,
            )
            db.executemany("INSERT INTO stay_tail VALUES (?, ?, ?, ?)", changes.tail_rows())
            for base in changes.bases:  # the tail cut: its older fixes are in the base now
                db.execute("INSERT OR REPLACE INTO stays VALUES (?, ?, ?, ?, ?)", base.row())
                if base.horizon is not None:  # the rows whose every fix is older than the cut
                    db.execute(
                        "DELETE FROM stay_tail WHERE tenant_id = ? AND technician_id = ? AND last_at < ?",
                        (base.tenant_id, base.technician_id, base.horizon.at),
                    )
            db.executemany(
                "INSERT OR REPLACE INTO presence VALUES (?, ?, ?, ?, ?, ?, ?, ?)", list(changes.presence.values())
            )
            db.executemany("INSERT OR REPLACE INTO clocks VALUES (?, ?, ?)", changes.clocks)
            db.executemany("INSERT OR REPLACE INTO offsets VALUES (?, ?)", list(next_offsets.items()))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
