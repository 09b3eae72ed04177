"""Export formats of the location history, written as a stream of byte chunks: ``begin()``, ``add()`` per event,
``end()``. NDJSON and CSV stream event by event, Parquet a row group at a time; GeoJSON and GPX group by
technician, so their fixes wait in a temporary SQLite file and come out at ``end()`` in chunks: no format holds an
export in memory. The caller reads the topic and writes the bytes (a file, stdout, an HTTP body).

- ``ndjson``: every event as the topic holds it, plus ``partition``, ``offset`` and ``appended_at``, in log order,
  and for a fix its quality verdict ``quality`` (the flags; ``[]`` for a good fix);
- ``csv``: one row per event, every event type, in log order (a header row first); ``quality``: a fix's flags joined
  with ``;`` (empty for a good fix);
- ``geojson``: a FeatureCollection: per technician one LineString of its fixes in device-time order (a Point when
  it has one fix), then one Point per fix with its properties (``quality`` when it has flags);
- ``gpx``: GPX 1.1, one track per technician, its fixes in device-time order; a flagged fix's flags in its
  ``<extensions>`` as ``<locstream:quality>`` elements (namespace ``GPX_NAMESPACE``), which GPX readers ignore;
- ``parquet``: one row per event, typed columns, ``quality`` as in CSV (needs pyarrow:
  ``pip install 'locstream[parquet]'``).

``add(record, flags)``: ``flags`` is a fix's verdict (``domain.projection.Verdicts``), empty for a good fix, None for
every other event.
"""

from __future__ import annotations

import csv
import io
import re
import sqlite3
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, Protocol
from xml.sax.saxutils import escape, quoteattr

import orjson

from replay.history_record import HistoryRecord
from schemas.events import (
    FIX_FIELD_NAMES,
    FIX_FIELDS,
    GeofenceEntered,
    GeofenceExited,
    LocationRecorded,
    StopEnded,
    StopStarted,
    TechnicianUpdated,
    fix_fields_of,
)

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
    *FIX_FIELD_NAMES,
    "backfill",
    "name",
    "status",
    "quality",
)
_PROPERTIES = tuple(name for name in FIX_FIELD_NAMES if name not in ("latitude", "longitude"))  # the geometry has those


class FormatError(ValueError):
    """An unknown format, or one whose library is not installed."""


class Exporter(Protocol):
    """``begin()``, ``add()`` per event, ``prepare()`` (what the end needs done first, blocking: the caller may run
    it in a thread), then the rest from ``end()`` a chunk at a time; ``close()`` lets go of what an export that ends
    early (a client gone) holds."""

    def begin(self) -> bytes: ...

    def add(self, record: HistoryRecord, flags: tuple[str, ...] | None = None) -> bytes: ...

    def prepare(self) -> None: ...

    def end(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


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


class _EventByEvent:
    """The formats that write each event as it comes: nothing to prepare, nothing left at the end, nothing held."""

    def prepare(self) -> None:
        pass

    def end(self) -> Iterator[bytes]:
        return iter(())

    def close(self) -> None:
        pass


class NdjsonExporter(_EventByEvent):
    """The record's own bytes with the log position spliced in: no decoding and re-encoding of the event."""

    def __init__(self) -> None:
        self._appended: tuple[int, str] = (-1, "")  # the records of a batch share their append time

    def begin(self) -> bytes:
        return b""

    def add(self, record: HistoryRecord, flags: tuple[str, ...] | None = None) -> bytes:
        if self._appended[0] != record.appended_ms:
            self._appended = (record.appended_ms, _appended(record))
        appended = self._appended[1]
        position = f',"partition":{record.partition},"offset":{record.offset},"appended_at":"{appended}"'
        if flags is not None:  # a fix
            position += f',"quality":{orjson.dumps(flags).decode()}'
        return record.value.rstrip()[:-1] + position.encode() + b"}\n"


def _row(record: HistoryRecord, flags: tuple[str, ...] | None = None) -> dict[str, Any]:
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
        row.update(fix_fields_of(event.data), backfill=event.data.backfill, quality=";".join(flags or ()))
    elif isinstance(event, TechnicianUpdated):
        row.update(name=event.data.name, status=event.data.status)
    elif isinstance(event, GeofenceEntered | GeofenceExited | StopStarted | StopEnded):
        row.update(job_id=event.data.job_id)  # a crossing or a stop: its type says which, its job the job
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


class CsvExporter(_EventByEvent):
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

    def add(self, record: HistoryRecord, flags: tuple[str, ...] | None = None) -> bytes:
        row = _row(record, flags)
        row["appended_at"] = _appended(record)
        self._writer.writerow({k: _iso(v) if isinstance(v, datetime) else spreadsheet_safe(v) for k, v in row.items()})
        return self._take()


class _Tracks:
    """Fixes per technician (and the names profile updates gave them), for the formats that group by track.

    The fixes go to a private temporary SQLite file (deleted when it is closed) as they come, and come back per
    technician in device-time order: an export of any size holds at most SQLite's page cache and one chunk in
    memory, not its fixes."""

    def __init__(self) -> None:
        # "" is SQLite's private temporary database on disk; the page cache is kept small.
        self._db = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        self._db.execute(f"PRAGMA cache_size = -{_SPILL_CACHE_KIB}")
        self._db.execute("PRAGMA journal_mode = OFF")
        self._db.execute("PRAGMA synchronous = OFF")
        self._db.execute(
            "CREATE TABLE fix (technician_id TEXT, recorded_us INTEGER, offset INTEGER, longitude REAL, latitude REAL,"
            " altitude REAL, recorded_at TEXT, properties BLOB)"
        )
        self._db.execute("BEGIN")
        self.names: dict[str, str] = {}
        self._technicians: list[tuple[str, int]] | None = None

    def add(self, record: HistoryRecord, flags: tuple[str, ...] | None = None) -> None:
        event = record.event()
        if isinstance(event, LocationRecorded):
            data, at = event.data, event.recorded_at
            self._db.execute(
                "INSERT INTO fix VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    event.technician_id,
                    _micros(at),
                    record.offset,
                    data.longitude,
                    data.latitude,
                    data.altitude,
                    _iso(at),
                    orjson.dumps(_point_properties(event, flags)),
                ),
            )
        elif isinstance(event, TechnicianUpdated) and event.data.name:
            self.names[event.technician_id] = event.data.name

    def sort(self) -> None:
        """Index the fixes in track order and count each technician's: the one step that costs time in proportion to
        the export (about a second per 500,000 fixes), so the caller runs it in a thread. Idempotent."""
        if self._technicians is None:
            self._db.execute("COMMIT")
            self._db.execute("CREATE INDEX fix_order ON fix (technician_id, recorded_us, offset)")
            query = "SELECT technician_id, count(*) FROM fix GROUP BY technician_id ORDER BY 1"
            self._technicians = list(self._db.execute(query))

    def technicians(self) -> list[tuple[str, int]]:
        """Each technician with fixes (sorted by id) and how many."""
        self.sort()
        assert self._technicians is not None
        return self._technicians

    def fixes(self, technician_id: str | None = None) -> Iterator[list[tuple[Any, ...]]]:
        """``(technician_id, longitude, latitude, altitude, recorded_at, properties)`` rows in device-time order (log
        order among equal times), per technician (sorted by id) or of one, ``_CHUNK_ROWS`` at a time."""
        columns = "technician_id, longitude, latitude, altitude, recorded_at, properties"
        order = "ORDER BY technician_id, recorded_us, offset"
        if technician_id is None:
            cursor = self._db.execute(f"SELECT {columns} FROM fix {order}")
        else:
            cursor = self._db.execute(f"SELECT {columns} FROM fix WHERE technician_id = ? {order}", (technician_id,))
        while rows := cursor.fetchmany(_CHUNK_ROWS):
            yield rows

    def close(self) -> None:
        self._db.close()


_SPILL_CACHE_KIB = 2048
_CHUNK_ROWS = 1_000  # rows per chunk of the grouped formats' output


def _micros(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def _point_properties(fix: LocationRecorded, flags: tuple[str, ...] | None = None) -> dict[str, Any]:
    data = fix.data
    properties: dict[str, Any] = {
        "technician_id": fix.technician_id,
        "event_id": str(fix.event_id),
        "recorded_at": _iso(fix.recorded_at),
    }
    properties.update({field: value for field in _PROPERTIES if (value := getattr(data, field)) is not None})
    if data.backfill:
        properties["backfill"] = True
    if flags:
        properties["quality"] = list(flags)
    return properties


class _TrackExporter:
    """The formats that group fixes by technician: they come out at ``end()``, a chunk at a time."""

    def __init__(self) -> None:
        self._tracks = _Tracks()

    def begin(self) -> bytes:
        return b""

    def add(self, record: HistoryRecord, flags: tuple[str, ...] | None = None) -> bytes:
        self._tracks.add(record, flags)
        return b""

    def prepare(self) -> None:
        self._tracks.sort()

    def end(self) -> Iterator[bytes]:
        try:
            yield from self._grouped()
        finally:
            self._tracks.close()

    def close(self) -> None:
        self._tracks.close()

    def _grouped(self) -> Iterator[bytes]:
        raise NotImplementedError


class GeoJsonExporter(_TrackExporter):
    """A FeatureCollection: per technician a LineString (a Point for one fix) with its fixes' times, then one Point
    per fix with its properties; written piece by piece, never whole in memory."""

    def _grouped(self) -> Iterator[bytes]:
        tracks, dumps = self._tracks, orjson.dumps
        yield b'{"type":"FeatureCollection","features":['
        first = True
        for technician_id, count in tracks.technicians():
            kind = b"LineString" if count > 1 else b"Point"
            opening = b'{"type":"Feature","geometry":{"type":"' + kind + b'","coordinates":' + b"[" * (count > 1)
            yield (b"" if first else b",") + opening
            first = False
            sep = b""
            for rows in tracks.fixes(technician_id):
                yield sep + b",".join(dumps([row[1], row[2]]) for row in rows)
                sep = b","
            name = dumps(tracks.names.get(technician_id))
            yield (b"]" * (count > 1)) + (
                b'},"properties":{"technician_id":%b,"technician_name":%b,"fixes":%d,"times":['
                % (dumps(technician_id), name, count)
            )
            sep = b""
            for rows in tracks.fixes(technician_id):
                yield sep + b",".join(dumps(row[4]) for row in rows)
                sep = b","
            yield b"]}}"
        for rows in tracks.fixes():
            yield b"".join(
                (b"" if first and at == 0 else b",")
                + b'{"type":"Feature","geometry":{"type":"Point","coordinates":%b},"properties":%b}'
                % (dumps([row[1], row[2]]), row[5])
                for at, row in enumerate(rows)
            )
            first = False
        yield b"]}\n"


GPX_NAMESPACE = "https://locstream.dev/gpx/quality/1"  # the flags of a fix, in its trkpt's extensions


def _gpx_extensions(properties: bytes) -> str:
    """A flagged fix's ``<extensions>`` (its GeoJSON properties name its flags); nothing for a good one."""
    if b'"quality"' not in properties:
        return ""
    flags = orjson.loads(properties).get("quality") or []
    return (
        "<extensions>"
        + "".join(f"<locstream:quality>{xml_text(f)}</locstream:quality>" for f in flags)
        + ("</extensions>")
    )


class GpxExporter(_TrackExporter):
    def _grouped(self) -> Iterator[bytes]:
        tracks = self._tracks
        yield (
            b'<?xml version="1.0" encoding="UTF-8"?>\n'
            b'<gpx version="1.1" creator="locstream" xmlns="http://www.topografix.com/GPX/1/1"'
            b' xmlns:locstream="' + GPX_NAMESPACE.encode() + b'">\n'
        )
        for technician_id, _ in tracks.technicians():
            name = tracks.names.get(technician_id, technician_id)
            yield f"  <trk><name>{xml_text(name)}</name><src>{xml_text(technician_id)}</src><trkseg>\n".encode()
            for rows in tracks.fixes(technician_id):
                yield "".join(
                    f"    <trkpt lat={quoteattr(repr(latitude))} lon={quoteattr(repr(longitude))}>"
                    f"{f'<ele>{altitude}</ele>' if altitude is not None else ''}<time>{at}</time>"
                    f"{_gpx_extensions(properties)}</trkpt>\n"
                    for _, longitude, latitude, altitude, at, properties in rows
                ).encode()
            yield b"  </trkseg></trk>\n"
        yield b"</gpx>\n"


class _Sink(io.RawIOBase):
    """Where pyarrow writes a Parquet file: the bytes are taken away as they come (``take``)."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._parts.append(bytes(data))
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


PARQUET_ROW_GROUP = 10_000  # rows held before they are written as a row group (about 10 MB of rows)


class ParquetExporter:
    """One row per event, typed columns, written a row group at a time as the rows come."""

    def __init__(self) -> None:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise FormatError("parquet needs pyarrow: pip install 'locstream[parquet]'") from exc
        moment = pa.timestamp("us", tz="UTC")
        self._schema = pa.schema(
            [
                ("offset", pa.int64()),
                ("appended_at", moment),
                ("type", pa.string()),
                ("event_id", pa.string()),
                ("technician_id", pa.string()),
                ("recorded_at", moment),
                ("received_at", moment),
                *((field.name, {"float": pa.float64(), "str": pa.string()}[field.kind]) for field in FIX_FIELDS),
                ("backfill", pa.bool_()),
                ("name", pa.string()),
                ("status", pa.string()),
                ("quality", pa.string()),
            ]
        )
        self._sink = _Sink()
        self._writer = pq.ParquetWriter(self._sink, self._schema)
        self._rows: list[dict[str, Any]] = []

    def begin(self) -> bytes:
        return self._sink.take()

    def add(self, record: HistoryRecord, flags: tuple[str, ...] | None = None) -> bytes:
        self._rows.append(_row(record, flags))
        if len(self._rows) < PARQUET_ROW_GROUP:
            return b""
        return self._row_group()

    def _row_group(self) -> bytes:
        import pyarrow as pa

        rows, self._rows = self._rows, []
        self._writer.write_table(pa.Table.from_pylist(rows, schema=self._schema))
        return self._sink.take()

    def prepare(self) -> None:
        pass

    def end(self) -> Iterator[bytes]:
        if self._rows:
            yield self._row_group()
        self._writer.close()
        yield self._sink.take()

    def close(self) -> None:
        self._rows = []
