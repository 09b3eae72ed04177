"""Export formats of the location history, written as a stream of byte chunks: ``begin()``, ``add()`` per event,
``end()``. NDJSON and CSV stream event by event; GeoJSON, GPX and Parquet group by technician or column and come
out at ``end()``. Pure: the caller reads the topic and writes the bytes (a file, stdout, an HTTP body).

- ``ndjson``: every event as the topic holds it, plus ``partition``, ``offset`` and ``appended_at``, in log order;
- ``csv``: one row per event, both event types, in log order (a header row first);
- ``geojson``: a FeatureCollection: per technician one LineString of its fixes in device-time order (a Point when
  it has one fix), then one Point per fix with its properties;
- ``gpx``: GPX 1.1, one track per technician, its fixes in device-time order;
- ``parquet``: one row per event, typed columns (needs pyarrow: ``pip install 'locstream[parquet]'``).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol
from xml.sax.saxutils import escape, quoteattr

import orjson

from replay.history_record import HistoryRecord
from schemas.events import LocationRecorded, TechnicianUpdated

FORMATS = ("ndjson", "csv", "geojson", "gpx", "parquet")
MEDIA_TYPES = {
    "ndjson": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
    "geojson": "application/geo+json",
    "gpx": "application/gpx+xml",
    "parquet": "application/vnd.apache.parquet",
}
SUFFIXES = {"ndjson": "ndjson", "csv": "csv", "geojson": "geojson", "gpx": "gpx", "parquet": "parquet"}

CSV_COLUMNS = (
    "offset",
    "appended_at",
    "type",
    "event_id",
    "technician_id",
    "recorded_at",
    "received_at",
    "latitude",
    "longitude",
    "accuracy_meters",
    "altitude",
    "speed_kmh",
    "heading",
    "activity",
    "job_id",
    "backfill",
    "name",
    "status",
)
_FIX_FIELDS = ("accuracy_meters", "altitude", "speed_kmh", "heading", "activity", "job_id")


class FormatError(ValueError):
    """An unknown format, or one whose library is not installed."""


class Exporter(Protocol):
    def begin(self) -> bytes: ...

    def add(self, record: HistoryRecord) -> bytes: ...

    def end(self) -> bytes: ...


def exporter(name: str) -> Exporter:
    makers: dict[str, Callable[[], Exporter]] = {
        "ndjson": NdjsonExporter,
        "csv": CsvExporter,
        "geojson": GeoJsonExporter,
        "gpx": GpxExporter,
        "parquet": ParquetExporter,
    }
    make = makers.get(name)
    if make is None:
        raise FormatError(f"unknown format {name!r}; one of {', '.join(FORMATS)}")
    return make()


def _iso(moment: datetime, timespec: str = "auto") -> str:
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")


def _appended(record: HistoryRecord) -> str:
    """The append time as Kafka keeps it: to the millisecond."""
    return _iso(record.appended_at, "milliseconds")


class NdjsonExporter:
    """The record's own bytes with the log position spliced in: no decoding and re-encoding of the event."""

    def __init__(self) -> None:
        self._appended: tuple[int, str] = (-1, "")  # the records of a batch share their append time

    def begin(self) -> bytes:
        return b""

    def add(self, record: HistoryRecord) -> bytes:
        if self._appended[0] != record.appended_ms:
            self._appended = (record.appended_ms, _appended(record))
        appended = self._appended[1]
        position = f',"partition":{record.partition},"offset":{record.offset},"appended_at":"{appended}"}}\n'
        return record.value.rstrip()[:-1] + position.encode()

    def end(self) -> bytes:
        return b""


def _row(record: HistoryRecord) -> dict[str, Any]:
    event = record.event()
    row: dict[str, Any] = {
        "offset": record.offset,
        "appended_at": record.appended_at,
        "type": event.type,
        "event_id": str(event.event_id),
        "technician_id": event.technician_id,
        "recorded_at": event.recorded_at,
        "received_at": event.received_at,
    }
    if isinstance(event, LocationRecorded):
        data = event.data
        row.update(latitude=data.latitude, longitude=data.longitude, backfill=data.backfill)
        row.update({field: getattr(data, field) for field in _FIX_FIELDS})
    elif isinstance(event, TechnicianUpdated):
        row.update(name=event.data.name, status=event.data.status)
    else:  # a geofence crossing: its type says which, its job the job
        row.update(job_id=event.data.job_id)
    return row


# A cell that begins with one of these is a formula to a spreadsheet (OWASP "CSV Injection"): such text values get a
# leading apostrophe, which spreadsheets show as text. Numbers are written as numbers (a negative longitude stays).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Characters XML 1.0 does not allow, even escaped (C0 controls but tab, LF and CR; U+FFFE, U+FFFF; lone surrogates).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def spreadsheet_safe(value: object) -> object:
    """``value`` as a CSV cell that a spreadsheet will not evaluate."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def xml_text(value: str) -> str:
    """``value`` escaped for XML text, without the characters XML cannot carry at all (replaced by U+FFFD)."""
    return escape(_NOT_XML.sub("\ufffd", value))


class CsvExporter:
    def __init__(self) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.DictWriter(self._buffer, CSV_COLUMNS, lineterminator="\n")

    def _take(self) -> bytes:
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text.encode()

    def begin(self) -> bytes:
        self._writer.writeheader()
        return self._take()

    def add(self, record: HistoryRecord) -> bytes:
        row = _row(record)
        row["appended_at"] = _appended(record)
        self._writer.writerow({k: _iso(v) if isinstance(v, datetime) else spreadsheet_safe(v) for k, v in row.items()})
        return self._take()

    def end(self) -> bytes:
        return b""


class _Tracks:
    """Fixes per technician (and the names profile updates gave them), for the formats that group by track."""

    def __init__(self) -> None:
        self.fixes: dict[str, list[tuple[datetime, int, LocationRecorded]]] = {}
        self.names: dict[str, str] = {}

    def add(self, record: HistoryRecord) -> None:
        event = record.event()
        if isinstance(event, LocationRecorded):
            self.fixes.setdefault(event.technician_id, []).append((event.recorded_at, record.offset, event))
        elif isinstance(event, TechnicianUpdated) and event.data.name:
            self.names[event.technician_id] = event.data.name

    def tracks(self) -> list[tuple[str, list[LocationRecorded]]]:
        """Per technician (sorted by id), its fixes in device-time order (log order among equal times)."""
        return [
            (technician_id, [fix for _, _, fix in sorted(fixes, key=lambda f: f[:2])])
            for technician_id, fixes in sorted(self.fixes.items())
        ]


def _point_properties(fix: LocationRecorded) -> dict[str, Any]:
    data = fix.data
    properties: dict[str, Any] = {
        "technician_id": fix.technician_id,
        "event_id": str(fix.event_id),
        "recorded_at": _iso(fix.recorded_at),
    }
    properties.update({field: value for field in _FIX_FIELDS if (value := getattr(data, field)) is not None})
    if data.backfill:
        properties["backfill"] = True
    return properties


class _TrackExporter:
    """The formats that group fixes by technician: everything comes out at ``end()``."""

    def __init__(self) -> None:
        self._tracks = _Tracks()

    def begin(self) -> bytes:
        return b""

    def add(self, record: HistoryRecord) -> bytes:
        self._tracks.add(record)
        return b""


class GeoJsonExporter(_TrackExporter):
    def end(self) -> bytes:
        lines: list[dict[str, Any]] = []
        points: list[dict[str, Any]] = []
        for technician_id, fixes in self._tracks.tracks():
            coordinates = [[fix.data.longitude, fix.data.latitude] for fix in fixes]
            properties = {
                "technician_id": technician_id,
                "technician_name": self._tracks.names.get(technician_id),
                "fixes": len(fixes),
                "times": [_iso(fix.recorded_at) for fix in fixes],
            }
            geometry = (
                {"type": "LineString", "coordinates": coordinates}
                if len(coordinates) > 1
                else {"type": "Point", "coordinates": coordinates[0]}
            )
            lines.append({"type": "Feature", "geometry": geometry, "properties": properties})
            points.extend(
                {
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": coordinate},
                    "properties": _point_properties(fix),
                }
                for coordinate, fix in zip(coordinates, fixes, strict=True)
            )
        return orjson.dumps({"type": "FeatureCollection", "features": lines + points}) + b"\n"


class GpxExporter(_TrackExporter):
    def end(self) -> bytes:
        out = [
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<gpx version="1.1" creator="locstream" xmlns="http://www.topografix.com/GPX/1/1">\n'
        ]
        for technician_id, fixes in self._tracks.tracks():
            name = self._tracks.names.get(technician_id, technician_id)
            out.append(f"  <trk><name>{xml_text(name)}</name><src>{xml_text(technician_id)}</src><trkseg>\n")
            for fix in fixes:
                data = fix.data
                elevation = f"<ele>{data.altitude}</ele>" if data.altitude is not None else ""
                out.append(
                    f"    <trkpt lat={quoteattr(repr(data.latitude))} lon={quoteattr(repr(data.longitude))}>"
                    f"{elevation}<time>{_iso(fix.recorded_at)}</time></trkpt>\n"
                )
            out.append("  </trkseg></trk>\n")
        out.append("</gpx>\n")
        return "".join(out).encode()


class ParquetExporter:
    def __init__(self) -> None:
        try:
            import pyarrow  # noqa: F401
        except ImportError as exc:
            raise FormatError("parquet needs pyarrow: pip install 'locstream[parquet]'") from exc
        self._rows: list[dict[str, Any]] = []

    def begin(self) -> bytes:
        return b""

    def add(self, record: HistoryRecord) -> bytes:
        self._rows.append(_row(record))
        return b""

    def end(self) -> bytes:
        import pyarrow as pa
        import pyarrow.parquet as pq

        moment = pa.timestamp("us", tz="UTC")
        schema = pa.schema(
            [
                ("offset", pa.int64()),
                ("appended_at", moment),
                ("type", pa.string()),
                ("event_id", pa.string()),
                ("technician_id", pa.string()),
                ("recorded_at", moment),
                ("received_at", moment),
                ("latitude", pa.float64()),
                ("longitude", pa.float64()),
                ("accuracy_meters", pa.float64()),
                ("altitude", pa.float64()),
                ("speed_kmh", pa.float64()),
                ("heading", pa.float64()),
                ("activity", pa.string()),
                ("job_id", pa.string()),
                ("backfill", pa.bool_()),
                ("name", pa.string()),
                ("status", pa.string()),
            ]
        )
        table = pa.Table.from_pylist(self._rows, schema=schema)
        sink = io.BytesIO()
        pq.write_table(table, sink)
        return sink.getvalue()
