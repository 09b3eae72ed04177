"""The projection in PostgreSQL (production; several projector processes may share it), with asyncpg.

Two projectors can briefly hold the same partition during a rebalance; each batch therefore takes a
transaction-scoped advisory lock per partition it touches (in order, so they cannot deadlock), which
serializes their read-apply-write of that partition's technicians.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from domain.fix_quality import QualityFilter
from domain.identity import EventIdentity, identity
from domain.position import Position
from domain.projection import Key, TechnicianState
from domain.visits import Crossing
from projector.store import (
    CROSSING_COLUMNS,
    EVENT_COLUMNS,
    SCHEMA_VERSION,
    STATE_COLUMNS,
    STAY_COLUMNS,
    STAY_KEY_COLUMNS,
    BatchResult,
    GenerationChangedError,
    HistoryPoint,
    Snapshot,
    StayQuery,
    StayRecord,
    beyond_stored,
    event_to_row,
    fix_column_definitions,
    marks,
    plan_batch,
    schema_upgrade,
    split_derived,
    state_from_row,
    state_to_row,
    stay_record,
)
from schemas.events import FIX_FIELD_NAMES, FIX_FIELDS, Event, Fact

log = logging.getLogger(__name__)
_LOCK_MIGRATE = 7_345_001  # advisory lock key for schema changes
_LOCK_PARTITION_BASE = 7_345_100  # + partition number


def _tables(generation: int) -> list[str]:
    g = int(generation)
    return [
        f"""CREATE TABLE IF NOT EXISTS technicians_g{g} (
            tenant_id text NOT NULL, technician_id text NOT NULL,
            name text, name_at timestamptz, name_partition int, name_offset bigint,
            status text NOT NULL, status_at timestamptz, status_partition int, status_offset bigint,
            {fix_column_definitions(_TYPES)}, last_update timestamptz, fix_partition int, fix_offset bigint,
            stay_subject text, stay_started_at timestamptz, stay_ended_at timestamptz, offline_since timestamptz,
            offline_reason text,
            PRIMARY KEY (tenant_id, technician_id))""",
        # The primary key is the event's identity (a retry repeats it) and serves the history queries too.
        f"""CREATE TABLE IF NOT EXISTS events_g{g} (
            event_id uuid NOT NULL, tenant_id text NOT NULL, technician_id text NOT NULL, type text NOT NULL,
            recorded_at timestamptz NOT NULL, received_at timestamptz NOT NULL, partition int NOT NULL,
            offset_ bigint NOT NULL, {fix_column_definitions(_TYPES)}, name text, status text,
            quality text[] NOT NULL DEFAULT '{{}}',
            PRIMARY KEY (tenant_id, technician_id, recorded_at, event_id))""",
        f"CREATE INDEX IF NOT EXISTS events_g{g}_by_time ON events_g{g} (recorded_at)",
        f"""CREATE TABLE IF NOT EXISTS offsets_g{g} (
            topic text NOT NULL, partition int NOT NULL, next_offset bigint NOT NULL,
            PRIMARY KEY (topic, partition))""",
        f"""CREATE TABLE IF NOT EXISTS crossings_g{g} (
            event_id uuid PRIMARY KEY, tenant_id text NOT NULL, technician_id text NOT NULL, geofence_id text NOT NULL,
            job_id text, entered boolean NOT NULL, at timestamptz NOT NULL, partition int NOT NULL,
            offset_ bigint NOT NULL)""",
        f"CREATE INDEX IF NOT EXISTS crossings_g{g}_by_job ON crossings_g{g} (tenant_id, job_id)",
        f"""CREATE TABLE IF NOT EXISTS stays_g{g} (
            tenant_id text NOT NULL, technician_id text NOT NULL, subject text NOT NULL,
            started_at timestamptz NOT NULL, kind text NOT NULL, ended_at timestamptz, data text NOT NULL,
            event_id uuid NOT NULL, partition int NOT NULL, offset_ bigint NOT NULL,
            PRIMARY KEY (tenant_id, technician_id, subject, started_at))""",
        f"CREATE INDEX IF NOT EXISTS stays_g{g}_by_start ON stays_g{g} (tenant_id, subject, started_at, technician_id)",
    ]


_TYPES = {"float": "float8", "str": "text"}  # a fix value's column type, by its kind
_UPSERT_STAY = (
    "INSERT INTO stays_g{g} (" + ", ".join(STAY_COLUMNS) + ") "
    "VALUES (" + ", ".join(f"${i + 1}" for i in range(len(STAY_COLUMNS))) + ") "
    "ON CONFLICT ("
    + ", ".join(STAY_KEY_COLUMNS)
    + ") DO UPDATE SET "
    + ", ".join(f"{column} = excluded.{column}" for column in STAY_COLUMNS[4:])
)
# The end of an offline period keeps what its start said (silent_seconds, reason): the data are merged.
_MERGE_STAY = _UPSERT_STAY.replace(
    "data = excluded.data", "data = (stays_g{g}.data::jsonb || excluded.data::jsonb)::text"
)
_DELETE_STAY = "DELETE FROM stays_g{g} WHERE " + " AND ".join(
    f"{column} = ${i + 1}" for i, column in enumerate(STAY_KEY_COLUMNS)
)
_QUALITY_WHERE = {"good": " AND quality = '{}'", "flagged": " AND quality <> '{}'", "all": ""}
# The history's columns' types (EVENT_COLUMNS), for the batch insert's unnest.
_EVENT_TYPES = (
    "uuid",
    "text",
    "text",
    "text",
    "timestamptz",
    "timestamptz",
    "int",
    "bigint",
    *(_TYPES[field.kind] for field in FIX_FIELDS),
    "text",
    "text",
)


class PostgresProjectionStore:
    def __init__(self, dsn: str, topic: str) -> None:
        self.dsn = dsn
        self.topic = topic
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "store not open"
        return self._pool

    async def open(self) -> None:
        assert self._pool is None, "store already open"
        self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=4)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_MIGRATE)
            await conn.execute("CREATE TABLE IF NOT EXISTS projection_meta (key text PRIMARY KEY, value int NOT NULL)")
            await conn.execute(
                "INSERT INTO projection_meta (key, value) VALUES ('generation', 1), ('schema', $1)"
                " ON CONFLICT DO NOTHING",
                SCHEMA_VERSION,
            )
            generation = await self._generation(conn)
            schema = await conn.fetchval("SELECT value FROM projection_meta WHERE key = 'schema'")
            upgraded, drops = schema_upgrade(schema, generation, ("technicians", "events", "offsets"))
            if upgraded != generation:
                for statement in drops:
                    await conn.execute(statement)
                generation = upgraded
                await conn.execute("UPDATE projection_meta SET value = $1 WHERE key = 'generation'", generation)
                await conn.execute("UPDATE projection_meta SET value = $1 WHERE key = 'schema'", SCHEMA_VERSION)
            for statement in _tables(generation):
                await conn.execute(statement)

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @staticmethod
    async def _generation(conn: Any) -> int:
        return int(await conn.fetchval("SELECT value FROM projection_meta WHERE key = 'generation'"))

    async def generation(self) -> int:
        async with self.pool.acquire() as conn:
            return await self._generation(conn)

    async def stored_offsets(self, generation: int | None = None) -> dict[int, int]:
        async with self.pool.acquire() as conn:
            return await self._offsets(conn, generation)

    async def _offsets(self, conn: Any, generation: int | None) -> dict[int, int]:
        g = await self._generation(conn) if generation is None else int(generation)
        rows = await conn.fetch(f"SELECT partition, next_offset FROM offsets_g{g} WHERE topic = $1", self.topic)
        return {row[0]: row[1] for row in rows}

    async def current(self, tenant_id: str, technician_id: str) -> TechnicianState | None:
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            g = await self._generation(conn)
            row = await conn.fetchrow(
                f"SELECT {', '.join(STATE_COLUMNS)} FROM technicians_g{g} WHERE tenant_id = $1 AND technician_id = $2",
                tenant_id,
                technician_id,
            )
        return None if row is None else state_from_row(tuple(row))

    async def crossings(self, tenant_id: str, job_id: str) -> list[Crossing]:
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            g = await self._generation(conn)
            rows = await conn.fetch(
                f"SELECT technician_id, geofence_id, entered, at, partition, offset_ FROM crossings_g{g}"
                f" WHERE tenant_id = $1 AND job_id = $2",
                tenant_id,
                job_id,
            )
        return [Crossing(*tuple(row)) for row in rows]

    async def snapshot(self) -> Snapshot:
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            g = await self._generation(conn)
            rows = await conn.fetch(f"SELECT {', '.join(STATE_COLUMNS)} FROM technicians_g{g}")
            offsets = await self._offsets(conn, g)
        return Snapshot(states=[state_from_row(tuple(row)) for row in rows], offsets=offsets, generation=g)

    async def history(
        self,
        tenant_id: str,
        technician_id: str,
        start: datetime | None,
        end: datetime | None,
        limit: int,
        quality: QualityFilter = "good",
    ) -> list[HistoryPoint] | None:
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            g = await self._generation(conn)
            known = await conn.fetchval(
                f"SELECT 1 FROM technicians_g{g} WHERE tenant_id = $1 AND technician_id = $2", tenant_id, technician_id
            )
            if known is None:
                return None
            rows = await conn.fetch(
                f"SELECT event_id, recorded_at, quality, {', '.join(FIX_FIELD_NAMES)} FROM events_g{g}"
                f" WHERE tenant_id = $1 AND technician_id = $2"
                f" AND type = 'location_recorded' AND ($3::timestamptz IS NULL OR recorded_at >= $3)"
                f" AND ($4::timestamptz IS NULL OR recorded_at < $4){_QUALITY_WHERE[quality]}"
                f" ORDER BY recorded_at DESC, partition DESC, offset_ DESC LIMIT $5",
                tenant_id,
                technician_id,
                start,
                end,
                limit,
            )
        return [HistoryPoint.of(str(row[0]), row[1], tuple(row)[3:], row[2]) for row in rows]

    async def stays(self, query: StayQuery) -> list[StayRecord]:
        where = ["tenant_id = $1", "subject = $2", "started_at >= $3", "started_at < $4"]
        args: list[Any] = [query.tenant_id, query.subject, query.start, query.end]
        if query.technician_id is not None:
            args.append(query.technician_id)
            where.append(f"technician_id = ${len(args)}")
        if query.after is not None:
            args.extend(query.after)
            where.append(f"(started_at, technician_id) > (${len(args) - 1}, ${len(args)})")
        args.append(query.limit)
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            g = await self._generation(conn)
            rows = await conn.fetch(
                f"SELECT technician_id, subject, kind, started_at, ended_at, data FROM stays_g{g}"
                f" WHERE {' AND '.join(where)} ORDER BY started_at, technician_id LIMIT ${len(args)}",
                *args,
            )
        return [stay_record(*row) for row in rows]

    async def apply_batch(
        self,
        events: Sequence[tuple[Event, Position]],
        next_offsets: dict[int, int],
        generation: int,
        derived: Sequence[tuple[Fact, Position]] = (),
    ) -> BatchResult:
        received = len(events)
        async with self.pool.acquire() as conn, conn.transaction():
            for partition in sorted({position.partition for _, position in events} | set(next_offsets)):
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_PARTITION_BASE + partition)
            # FOR SHARE: a switch (an UPDATE of this row) waits for batches in flight, and later ones see it.
            current = await conn.fetchval("SELECT value FROM projection_meta WHERE key = 'generation' FOR SHARE")
            if generation < current:  # a rebuild writes the next one before switching
                raise GenerationChangedError(generation)
            g = generation
            stored = await self._offsets(conn, g)  # under the partitions' locks: no batch commits meanwhile
            events = beyond_stored(events, stored)
            derived = beyond_stored(derived, stored)
            crossings, stays = split_derived(derived)
            marked = marks(derived)
            fresh = await self._insert_fresh(conn, g, events)
            keys = {(e.tenant_id, e.technician_id) for e, _ in fresh} | {
                (e.tenant_id, e.technician_id) for e, _ in marked
            }
            current = await self._load(conn, g, keys)
            plan = plan_batch(current, fresh, marked)
            changed = plan.changed
            if plan.flags:  # few: the history's rows went in as good; the flagged ones are marked
                await conn.executemany(
                    f"UPDATE events_g{g} SET quality = $5"
                    f" WHERE tenant_id = $1 AND technician_id = $2 AND recorded_at = $3 AND event_id = $4",
                    [
                        (event.tenant_id, event.technician_id, event.recorded_at, event.event_id, list(flags))
                        for event, position in fresh
                        if (flags := plan.flags.get(position))
                    ],
                )
            updates = ", ".join(f"{c} = excluded.{c}" for c in STATE_COLUMNS[2:])
            await conn.executemany(
                f"INSERT INTO technicians_g{g} ({', '.join(STATE_COLUMNS)}) "
                f"VALUES ({', '.join(f'${i + 1}' for i in range(len(STATE_COLUMNS)))}) "
                f"ON CONFLICT (tenant_id, technician_id) DO UPDATE SET {updates}",
                [state_to_row(state) for state in changed.values()],
            )
            await conn.executemany(
                f"INSERT INTO offsets_g{g} (topic, partition, next_offset) VALUES ($1, $2, $3) "
                f"ON CONFLICT (topic, partition) DO UPDATE "
                f"SET next_offset = GREATEST(offsets_g{g}.next_offset, excluded.next_offset)",
                [(self.topic, partition, offset) for partition, offset in next_offsets.items()],
            )
            if crossings:  # a crossing repeated by a geofence processor that crashed is stored once
                await conn.executemany(
                    f"INSERT INTO crossings_g{g} ({', '.join(CROSSING_COLUMNS)}) "
                    f"VALUES ({', '.join(f'${i + 1}' for i in range(len(CROSSING_COLUMNS)))}) "
                    f"ON CONFLICT (event_id) DO NOTHING",
                    crossings,
                )
            for change in stays:  # in log order: a stop's last event wins, a retraction deletes it
                if change.row is None:
                    await conn.execute(_DELETE_STAY.format(g=g), *change.key)
                else:
                    await conn.execute((_MERGE_STAY if change.merge else _UPSERT_STAY).format(g=g), *change.row)
        return BatchResult(applied=len(fresh), duplicates=received - len(fresh), changed=len(changed))

    @staticmethod
    async def _insert_fresh(
        conn: Any, g: int, events: Sequence[tuple[Event, Position]]
    ) -> list[tuple[Event, Position]]:
        """Insert the batch into the history; the events it took (a new identity) are the ones to apply."""
        first: dict[EventIdentity, tuple[Event, Position]] = {}
        for event, position in events:
            first.setdefault(identity(event), (event, position))
        if not first:
            return []
        rows = [event_to_row(event, position) for event, position in first.values()]
        columns = list(zip(*rows, strict=True))
        unnest = ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(_EVENT_TYPES))
        inserted = await conn.fetch(
            f"INSERT INTO events_g{g} ({', '.join(EVENT_COLUMNS)}) SELECT * FROM unnest({unnest}) "
            f"ON CONFLICT (tenant_id, technician_id, recorded_at, event_id) DO NOTHING RETURNING partition, offset_",
            *[list(column) for column in columns],
        )
        taken = {(row[0], row[1]) for row in inserted}
        return [
            (event, position) for event, position in first.values() if (position.partition, position.offset) in taken
        ]

    @staticmethod
    async def _load(conn: Any, g: int, keys: set[Key]) -> dict[Key, TechnicianState]:
        if not keys:
            return {}
        tenants, technicians = zip(*keys, strict=True)
        rows = await conn.fetch(
            f"SELECT {', '.join(STATE_COLUMNS)} FROM technicians_g{g} "
            f"WHERE (tenant_id, technician_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
            list(tenants),
            list(technicians),
        )
        return {(row[0], row[1]): state_from_row(tuple(row)) for row in rows}

    async def prune_history(self, recorded_before: datetime) -> int:
        async with self.pool.acquire() as conn:
            g = await self._generation(conn)
            status = await conn.execute(f"DELETE FROM events_g{g} WHERE recorded_at < $1", recorded_before)
        return int(status.split()[-1])

    async def new_generation(self) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_MIGRATE)
            g = await self._generation(conn) + 1
            for table in ("technicians", "events", "offsets", "crossings", "stays"):
                await conn.execute(f"DROP TABLE IF EXISTS {table}_g{g}")
            for statement in _tables(g):
                await conn.execute(statement)
        return g

    async def switch_generation(self, generation: int) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_MIGRATE)
            previous = await self._generation(conn)
            await conn.execute("UPDATE projection_meta SET value = $1 WHERE key = 'generation'", generation)
        return previous

    async def drop_generation(self, generation: int) -> None:
        async with self.pool.acquire() as conn:
            assert generation != await self._generation(conn), "refusing to drop the current generation"
            for table in ("technicians", "events", "offsets", "crossings", "stays"):
                await conn.execute(f"DROP TABLE IF EXISTS {table}_g{int(generation)}")
