"""The export formats without a broker: each read back by a real parser, the grouped ones in device-time order per
technician, and none holding the export in memory (measured with tracemalloc against the export's own size)."""

from __future__ import annotations

import io
import json
import tracemalloc
from datetime import timedelta

import geojson
import gpxpy
import pyarrow.parquet as pq
import pytest

from replay.formats import FORMATS, Exporter, exporter
from replay.history_record import HistoryRecord
from schemas.events import Event, encode_event
from tests.support.events import T0, location, profile

TENANT = "acme-fiber"


def _records(events: list[Event]) -> list[HistoryRecord]:
    return [HistoryRecord(encode_event(event), 0, offset, 1_764_144_000_000) for offset, event in enumerate(events)]


def _export(out: Exporter, records: list[HistoryRecord]) -> bytes:
    parts = [out.begin(), *(out.add(record) for record in records), *out.end()]
    return b"".join(parts)


def _fleet(fixes_per_technician: int, technicians: int) -> list[Event]:
    events: list[Event] = [profile(TENANT, "tech-0", T0, "Ada Obi")]
    for step in range(fixes_per_technician):
        for t in range(technicians):
            # device time runs backwards for tech-1: the grouped formats sort by it, not by offset
            sign = -1 if t == 1 else 1
            at = T0 + timedelta(seconds=sign * step)
            events.append(location(TENANT, f"tech-{t}", at, 6.5 + step / 1e4, 3.3 + t / 100, altitude=float(step)))
    return events


def test_geojson_and_gpx_group_fixes_per_technician_in_device_time_order() -> None:
    records = _records(_fleet(12, 3))
    collection = geojson.loads(_export(exporter("geojson"), records))
    assert collection.is_valid
    lines = [f for f in collection["features"] if f["geometry"]["type"] == "LineString"]
    points = [f for f in collection["features"] if f["geometry"]["type"] == "Point"]
    assert [line["properties"]["technician_id"] for line in lines] == ["tech-0", "tech-1", "tech-2"]
    assert lines[0]["properties"]["technician_name"] == "Ada Obi" and len(points) == 36
    backwards = lines[1]["properties"]["times"]
    assert backwards == sorted(backwards) and len(backwards) == 12
    assert lines[1]["geometry"]["coordinates"][0] == [3.31, 6.5 + 11 / 1e4]  # its earliest fix is its last one sent
    gpx = gpxpy.parse(_export(exporter("gpx"), records).decode())
    assert [track.source for track in gpx.tracks] == ["tech-0", "tech-1", "tech-2"]
    times = [point.time.isoformat() for point in gpx.tracks[1].segments[0].points if point.time]
    assert times == sorted(times) and len(times) == 12 and gpx.tracks[0].name == "Ada Obi"


def test_a_technician_with_one_fix_is_a_point_and_an_empty_export_is_valid() -> None:
    one = _records([location(TENANT, "solo", T0, 6.5, 3.3)])
    features = json.loads(_export(exporter("geojson"), one))["features"]
    assert [f["geometry"]["type"] for f in features] == ["Point", "Point"]
    assert json.loads(_export(exporter("geojson"), [])) == {"type": "FeatureCollection", "features": []}
    assert gpxpy.parse(_export(exporter("gpx"), []).decode()).tracks == []
    assert pq.read_table(io.BytesIO(_export(exporter("parquet"), []))).num_rows == 0


def test_parquet_comes_out_a_row_group_at_a_time() -> None:
    from replay import formats

    records = _records(_fleet(30, 4))
    out = exporter("parquet")
    pieces = [out.begin()]
    pieces += [out.add(record) for record in records[: formats.PARQUET_ROW_GROUP]]
    assert sum(map(len, pieces)) == len(pieces[0])  # nothing but the magic bytes before a row group is full
    pieces += [out.add(record) for record in records[formats.PARQUET_ROW_GROUP :]]
    pieces += list(out.end())
    table = pq.read_table(io.BytesIO(b"".join(pieces)))
    assert table.num_rows == len(records)


def _peak(name: str, records: list[HistoryRecord]) -> tuple[int, int]:
    """The bytes an export of ``records`` wrote, and the most memory it held at once (tracemalloc)."""
    out = exporter(name)
    tracemalloc.start()
    try:
        written = len(out.begin())
        for record in records:
            written += len(out.add(record))
            record._event = None  # as the reader hands records over: each batch is let go once written
        for piece in out.end():
            written += len(piece)
        return written, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name", FORMATS)
def test_no_format_holds_the_export_in_memory(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four times the events, about the same memory at the peak (before: GeoJSON, GPX and Parquet held every event,
    several times its size, and 50 GPX exports at once took 8.4 GiB)."""
    from replay import formats

    monkeypatch.setattr(formats, "PARQUET_ROW_GROUP", 2_000)
    small_written, small_peak = _peak(name, _records(_fleet(1_500, 4)))
    written, peak = _peak(name, _records(_fleet(6_000, 4)))
    assert written > 3.5 * small_written
    assert peak < 1.5 * small_peak + 256 * 1024, f"{name}: peak {small_peak:,} B, then {peak:,} B for 4x the events"
    assert peak < 8 * 2**20
