"""What only the SQLite backend does: replace tables of an older schema, and refuse a batch planned on stale reads."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from projector.sqlite_store import SqliteProjectionStore, group_by_technician
from projector.store import SCHEMA_VERSION, ConcurrentWriteError
from tests.projector.test_store_contract import fix, log_of


async def test_tables_of_an_older_schema_are_replaced_by_a_fresh_generation(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite3"
    store = SqliteProjectionStore(path, "topic")
    await store.open()
    await store.apply_batch(log_of(fix(0, 1.0)), {2: 1}, 1)
    await store.close()
    with sqlite3.connect(path) as conn:  # what a store of schema 1 left: its tables and meta
        conn.execute("UPDATE projection_meta SET value = 1 WHERE key = 'schema'")
        conn.execute("CREATE TABLE events_g1 (event_id TEXT PRIMARY KEY)")

    reopened = SqliteProjectionStore(path, "topic")
    await reopened.open()
    try:
        snapshot = await reopened.snapshot()
        assert (snapshot.generation, snapshot.states, snapshot.offsets) == (2, [], {})  # replayed from the start
    finally:
        await reopened.close()
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert dict(conn.execute("SELECT key, value FROM projection_meta")) == {
            "generation": 2,
            "schema": SCHEMA_VERSION,
        }
    assert not tables & {"events_g1", "technicians_g1", "history_g1", "offsets_g1"}


async def test_a_batch_read_before_another_writer_stored_its_partitions_is_refused(tmp_path: Path) -> None:
    first, second = (
        SqliteProjectionStore(tmp_path / "p.sqlite3", "t"),
        SqliteProjectionStore(tmp_path / "p.sqlite3", "t"),
    )
    await first.open()
    await second.open()
    try:
        batch = group_by_technician(log_of(fix(0, 1.0)))
        read = first._read_for_batch(1, batch, [2], set())  # first plans its batch ...
        await second.apply_batch(log_of(fix(0, 9.0)), {2: 1}, 1)  # ... a second projector writes partition 2 ...
        with pytest.raises(ConcurrentWriteError):  # ... so first's write would be based on stale reads
            first._write_batch(1, read.offsets, [], [], {2: 1}, [])
        assert [s.fix.latitude for s in (await first.snapshot()).states if s.fix] == [9.0]
    finally:
        await first.close()
        await second.close()
