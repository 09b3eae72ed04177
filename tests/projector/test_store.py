"""The SQLite store keeps table and offsets together and reads back exactly what the apply rule made."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from projector.apply import Position, apply
from projector.store import SqliteProjectionStore, read_snapshot
from schemas.events import Event, LocationData, LocationRecorded, TechnicianData, TechnicianUpdated

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def events() -> list[tuple[Event, Position]]:
    base = {"received_at": T0, "tenant_id": "a"}
    return [
        (
            LocationRecorded(
                event_id=uuid.uuid4(),
                technician_id="t1",
                recorded_at=T0,
                **base,
                data=LocationData(latitude=1.5, longitude=2.5, heading=90.0, activity="driving"),
            ),
            Position(2, 0),
        ),
        (
            TechnicianUpdated(
                event_id=uuid.uuid4(),
                technician_id="t1",
                recorded_at=T0 + timedelta(seconds=1),
                **base,
                data=TechnicianData(name="Ada", status="on_job"),
            ),
            Position(2, 1),
        ),
        (
            TechnicianUpdated(
                event_id=uuid.uuid4(), technician_id="t2", recorded_at=T0, **base, data=TechnicianData(status="off")
            ),
            Position(2, 2),
        ),
    ]


async def test_batch_and_offsets_are_stored_together_and_read_back_equal(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite3"
    store = SqliteProjectionStore(path, "topic")
    await store.open()
    try:
        assert await store.stored_offsets() == {}
        await store.apply_batch(events(), {2: 3})
        assert await store.stored_offsets() == {2: 3}
    finally:
        await store.close()
    snapshot = read_snapshot(path, "topic")
    expected = {}
    for event, position in events():
        key = (event.tenant_id, event.technician_id)
        expected[key] = apply(expected.get(key), event, position)
    assert {(s.tenant_id, s.technician_id): s for s in snapshot.states} == expected
    assert snapshot.offsets == {2: 3}
    assert read_snapshot(path, "other-topic").offsets == {}


async def test_a_failed_batch_stores_neither_rows_nor_offsets(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite3"
    store = SqliteProjectionStore(path, "topic")
    await store.open()
    try:
        bad_offsets: dict[int, int] = {2: None}  # type: ignore[dict-item]  # violates NOT NULL after the rows
        with pytest.raises(sqlite3.IntegrityError):
            await store.apply_batch(events(), bad_offsets)
        assert await store.stored_offsets() == {}
    finally:
        await store.close()
    assert read_snapshot(path, "topic").states == []


def test_a_missing_database_is_an_empty_snapshot(tmp_path: Path) -> None:
    snapshot = read_snapshot(tmp_path / "absent.sqlite3", "topic")
    assert snapshot.states == [] and snapshot.offsets == {}
