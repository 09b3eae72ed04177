"""A fix's values are declared once (``schemas.events.FIX_FIELDS``, from ``LocationData``) and every place that
stores or exports a fix carries each of them: a fix with a distinct value in every field comes out of each output
with all of its values. A field added to ``LocationData`` that some output does not carry fails here."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import uuid
from typing import Any

import msgspec
import pyarrow.parquet as pq

from domain.position import Position
from domain.projection import Fix, apply
from producers.models import BatchFix, LocationFixBody
from producers.routes import EventHeader, location_event
from projector import postgres_store, sqlite_store
from projector.history_chunks import item_of, newest_fixes, pack
from projector.store import EVENT_COLUMNS, STATE_COLUMNS, HistoryPoint, event_to_row, state_from_row, state_to_row
from replay.formats import exporter
from replay.history_record import HistoryRecord
from schemas.events import FIX_FIELD_NAMES, FIX_FIELDS, LocationData, encode_event
from schemas.tenant_rules import QualityRules
from tests.support.events import T0, location

POSITION = Position(2, 41)


def _distinct_values() -> dict[str, Any]:
    """A value for every fix field, each unlike the others and within its bounds."""
    values: dict[str, Any] = {}
    for at, field in enumerate(FIX_FIELDS):
        values[field.name] = 1.25 + at if field.kind == "float" else f"{field.name}-value"
    return values


VALUES = _distinct_values()
FIX = location("acme-fiber", "tech-1", T0, **VALUES)


def _carried(found: dict[str, Any]) -> dict[str, Any]:
    return {name: found.get(name) for name in FIX_FIELD_NAMES}


def test_the_fields_are_the_contracts_numbers_and_texts_in_its_order() -> None:
    declared = [field.name for field in msgspec.structs.fields(LocationData)]
    assert FIX_FIELD_NAMES == tuple(name for name in declared if name not in ("backfill", "metadata", "quality"))
    assert {field.name: field.kind for field in FIX_FIELDS}["job_id"] == "str"


def test_the_projection_keeps_every_value_in_its_state_row_and_history_row() -> None:
    state = apply(None, FIX, POSITION)
    assert state.fix is not None
    assert _carried({f.name: getattr(state.fix, f.name) for f in dataclasses.fields(Fix)}) == VALUES
    row = state_to_row(state)
    assert _carried(dict(zip(STATE_COLUMNS, row, strict=True))) == VALUES
    assert state_from_row(row) == state
    assert _carried(dict(zip(EVENT_COLUMNS, event_to_row(FIX, POSITION), strict=True))) == VALUES


def test_both_backends_tables_have_a_column_of_its_type_for_every_value() -> None:
    sqlite_state = next(s for s in sqlite_store._tables(1).split(";") if "TABLE IF NOT EXISTS technicians_g1" in s)
    postgres = [
        s
        for s in postgres_store._tables(1)
        if "TABLE IF NOT EXISTS technicians_g1" in s or "TABLE IF NOT EXISTS events_g1" in s
    ]
    assert len(postgres) == 2  # the state and the history (SQLite's history keeps chunks: tested below)
    for field in FIX_FIELDS:
        assert f"{field.name} {sqlite_store._TYPES[field.kind]}," in sqlite_state
        for table in postgres:
            assert f"{field.name} {postgres_store._TYPES[field.kind]}," in table
    assert len(postgres_store._EVENT_TYPES) == len(EVENT_COLUMNS)


def test_the_history_chunks_and_points_carry_every_value_and_older_items_read_as_none() -> None:
    (chunk,) = pack([item_of(FIX, POSITION)])
    (point,) = newest_fixes([(chunk.last_at, chunk.items)], 0, 2**62, 10)
    assert _carried(dataclasses.asdict(point)) == VALUES
    assert {f.name for f in dataclasses.fields(HistoryPoint)} == {
        "event_id",
        "recorded_at",
        "quality",
        *FIX_FIELD_NAMES,
    }
    older = HistoryPoint.of("e", T0, list(VALUES.values())[:-1], [])  # an item written before the last field existed
    assert getattr(older, FIX_FIELD_NAMES[-1]) is None and older.latitude == VALUES["latitude"]


def test_the_request_bodies_take_every_value_into_the_event() -> None:
    header = EventHeader("acme-fiber", "tech-1", T0, T0, uuid.uuid4())
    body = msgspec.json.decode(json.dumps(VALUES), type=LocationFixBody)
    assert _carried(msgspec.structs.asdict(location_event(header, body, QualityRules()).data)) == VALUES
    batch = msgspec.json.decode(
        json.dumps({**VALUES, "event_id": str(uuid.uuid4()), "technician_id": "t", "recorded_at": T0.isoformat()}),
        type=BatchFix,
    )
    assert _carried(msgspec.structs.asdict(location_event(header, batch, QualityRules()).data)) == VALUES


def _export(name: str) -> bytes:
    out = exporter(name)
    record = HistoryRecord(encode_event(FIX), 0, 7, 1_764_144_000_000)
    return b"".join([out.begin(), out.add(record), *out.end()])


def test_every_export_format_carries_every_value() -> None:
    (ndjson,) = [json.loads(line) for line in _export("ndjson").splitlines()]
    assert _carried(ndjson["data"]) == VALUES
    (row,) = csv.DictReader(io.StringIO(_export("csv").decode()))
    strings = {name: str(value) for name, value in VALUES.items()}
    assert _carried(row) == strings
    (parquet,) = pq.read_table(io.BytesIO(_export("parquet"))).to_pylist()
    assert _carried(parquet) == VALUES
    point = json.loads(_export("geojson"))["features"][-1]
    assert point["geometry"]["coordinates"] == [VALUES["longitude"], VALUES["latitude"]]
    geometry = {"latitude": VALUES["latitude"], "longitude": VALUES["longitude"]}
    assert _carried({**point["properties"], **geometry}) == VALUES
