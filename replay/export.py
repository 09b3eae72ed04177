"""One export of a tenant's history: who may ask, what is read, and the bytes in the chosen format.

Everything that can be refused is checked before the first byte (``plan``): the token (an analyst or admin of
the tenant), the format, the range, the quality filter. ``chunks`` then reads the span and yields the export's bytes
as it goes; ``ExportStats`` counts what it kept and dropped.

Each fix is judged as the projector judges it (``domain.projection.Verdicts``: beside the technician's current good
fix, in log order), so its verdict needs the fixes before it: the hour appended before the range (``JUDGED_BEFORE``)
is read and judged, not written. Reading from the partition's oldest record would be exact for any log and cost a
full read of the partition for every export; an hour is exact unless the technician's good fix an hour before the
range was itself misjudged (a jump rule forgets a last good fix after ``domain.fix_quality.JUMP_WINDOW``, 15
minutes, so a wrong start heals within it: docs/replay.md). The quality filter (``good``, the default, ``flagged``
or ``all``) picks the fixes written; the other events are written unless only flagged fixes are asked for.

``locstream replay`` (``run_cli``) writes to ``FILE.partial`` and renames it once complete, so an interrupted export
never looks finished; the HTTP export streams the same chunks.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

from aiokafka.errors import KafkaError

from domain.fix_quality import QUALITY_FILTERS, QualityFilter, wanted
from domain.position import Position
from domain.projection import Verdicts
from locstream.auth import AuthError, TokenVerifier
from locstream.progress import Progress
from locstream.settings import AuthSettings, KafkaSettings
from replay.formats import FORMATS, Exporter, FormatError, exporter
from replay.history_record import FixFacts, HistoryRecord
from replay.reader import Deduplicated, HistoryReader, Span
from replay.time_range import RangeError, TimeRange, time_range
from schemas.claims import HISTORY_ROLES, TokenClaims, refusal
from schemas.events import InvalidEventError, QualityFlag

LOOP_TURN_SECONDS = 0.01  # an export gives the event loop a turn at least this often: other requests go on
JUDGED_BEFORE = timedelta(hours=1)  # appended before the range, read to judge the range's first fixes


class ExportRefusedError(Exception):
    """The export cannot start; ``status`` is the HTTP status that says why (400, 401, 403, 422)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class ExportPlan:
    tenant_id: str
    range: TimeRange
    format: str
    technicians: tuple[str, ...] = ()
    quality: QualityFilter = "good"


@dataclass
class ExportStats:
    events: int = 0  # written
    duplicates: int = 0  # retries of an event already written
    invalid: int = 0  # records of the tenant that are not events (dead-lettered by the projector too)
    filtered: int = 0  # fixes the quality filter left out
    judged_before: int = 0  # fixes before the range, read to judge those in it
    records_read: int = 0  # offsets of the span read, every tenant's
    technicians: set[str] = field(default_factory=set)

    def summary(self, plan: ExportPlan, span: Span | None, seconds: float, complete: bool) -> dict[str, Any]:
        counts = asdict(self)
        counts["technicians"] = len(self.technicians)
        return {
            "complete": complete,
            "tenant_id": plan.tenant_id,
            "from": plan.range.start.isoformat(),
            "to": plan.range.end.isoformat(),
            "format": plan.format,
            **counts,
            "partition": span.partition.partition if span else None,
            "offsets": [span.first, span.end] if span else None,
            "seconds": round(seconds, 3),
            "events_per_second": round(self.events / seconds, 1) if seconds > 0 else None,
        }


async def authorize(token: str | None, tenant_id: str | None, auth: AuthSettings) -> TokenClaims:
    """An analyst's or admin's claims; ``tenant_id`` (when given) must be the token's tenant."""
    try:
        claims = await TokenVerifier(auth).verify(token)
    except AuthError as exc:
        raise ExportRefusedError(401, exc.reason) from exc
    if (reason := refusal(claims, HISTORY_ROLES, "export history")) is not None:
        raise ExportRefusedError(403, reason)
    if tenant_id is not None and tenant_id != claims.tenant_id:
        raise ExportRefusedError(403, "the token is of another tenant")
    return claims


def plan(
    tenant_id: str,
    start: str,
    end: str,
    format_name: str,
    technicians: Sequence[str],
    kafka: KafkaSettings,
    quality: str = "good",
) -> ExportPlan:
    if format_name not in FORMATS:
        raise ExportRefusedError(400, f"unknown format {format_name!r}; one of {', '.join(FORMATS)}")
    if quality not in QUALITY_FILTERS:
        raise ExportRefusedError(422, f"quality: {quality[:40]!r} is not one of {', '.join(QUALITY_FILTERS)}")
    try:
        checked = time_range(start, end, timedelta(days=kafka.retention_days))
    except RangeError as exc:
        raise ExportRefusedError(422, str(exc)) from exc
    chosen = next(name for name in QUALITY_FILTERS if name == quality)
    return ExportPlan(tenant_id, checked, format_name, tuple(dict.fromkeys(technicians)), chosen)


def writer_for(plan: ExportPlan) -> Exporter:
    try:
        return exporter(plan.format)
    except FormatError as exc:
        raise ExportRefusedError(400, str(exc)) from exc


async def chunks(
    reader: HistoryReader, plan: ExportPlan, out: Exporter, stats: ExportStats, span: Span
) -> AsyncIterator[bytes]:
    """The export's bytes: one chunk per fetch for the formats that stream, the rest at the end."""
    try:
        async for data in _chunks(reader, plan, out, stats, span):
            yield data
    finally:
        out.close()  # a client gone mid-stream: the temporary file goes now, not whenever this is collected


async def _chunks(
    reader: HistoryReader, plan: ExportPlan, out: Exporter, stats: ExportStats, span: Span
) -> AsyncIterator[bytes]:
    keep = Deduplicated(plan.technicians)
    verdicts = Verdicts()
    tenant, quality = plan.tenant_id, plan.quality
    head = out.begin()
    if head:
        yield head
    # One read from the hour before the range: the records before ``span.first`` are judged, not written.
    warm_up = await reader.span(tenant, plan.range.start - JUDGED_BEFORE, plan.range.start)
    read = Span(span.partition, min(warm_up.first, span.first), span.end)
    earlier_duplicates: int | None = None  # the duplicates counted before the range, once it is reached
    turn = time.perf_counter()
    async for batch in reader.batches(read, tenant):
        parts: list[bytes] = []
        for record in batch:
            if time.perf_counter() - turn > LOOP_TURN_SECONDS:  # a fetch of 10,000 records: let others run meanwhile
                await asyncio.sleep(0)
                turn = time.perf_counter()
            written = record.offset >= span.first
            if written and earlier_duplicates is None:
                earlier_duplicates = keep.duplicates
            try:
                if not keep.keep(record):
                    continue
                fix = record.fix()
                if not written:
                    if fix is not None:
                        _judge(verdicts, tenant, record, fix)
                        stats.judged_before += 1
                    continue
                if fix is None:
                    if quality == "flagged":
                        continue
                    parts.append(out.add(record))
                else:
                    flags = _judge(verdicts, tenant, record, fix)
                    if not wanted(quality, flags):
                        stats.filtered += 1
                        continue
                    parts.append(out.add(record, flags))
            except InvalidEventError:
                if written:
                    stats.invalid += 1
                continue
            stats.technicians.add(record.technician_id)
        stats.events += len(parts)
        if earlier_duplicates is not None:
            stats.duplicates = keep.duplicates - earlier_duplicates
        if batch and batch[-1].offset >= span.first:
            stats.records_read = batch[-1].offset + 1 - span.first
        data = b"".join(parts)
        if data:
            yield data
    stats.records_read = span.size  # the span is read to its end, the other tenants' records after the last one too
    await asyncio.to_thread(out.prepare)  # sorting a grouped format's fixes: not on the loop
    for tail in out.end():
        if tail:
            yield tail


def _judge(verdicts: Verdicts, tenant: str, record: HistoryRecord, fix: FixFacts) -> tuple[QualityFlag, ...]:
    data = fix.data
    assert data.latitude is not None and data.longitude is not None  # HistoryRecord.fix checked them
    key = (tenant, record.technician_id)
    position = Position(record.partition, record.offset)
    return verdicts.judge(key, fix.recorded_at, data.latitude, data.longitude, data.quality, position)


async def run_cli(
    kafka: KafkaSettings,
    auth: AuthSettings,
    *,
    tenant_id: str,
    token: str | None,
    start: str,
    end: str,
    format_name: str,
    technicians: Sequence[str],
    out_path: str | None,
    err: TextIO = sys.stderr,
    quality: str = "good",
) -> int:
    """``locstream replay``: 0 when the export is complete; 2 when refused (the reason on stderr); 1 on failure.
    The summary (JSON) goes to stdout when the export goes to a file, else to stderr after it."""
    try:
        await authorize(token, tenant_id, auth)
        the_plan = plan(tenant_id, start, end, format_name, technicians, kafka, quality)
        out = writer_for(the_plan)
    except ExportRefusedError as exc:
        print(f"error: {exc.reason}", file=err)
        return 2
    stats, began = ExportStats(), time.monotonic()
    target = Path(out_path) if out_path else None
    partial = target.with_name(target.name + ".partial") if target else None
    span: Span | None = None
    complete = False
    try:
        async with HistoryReader(kafka) as reader:
            span = await reader.span(tenant_id, the_plan.range.start, the_plan.range.end)
            progress = Progress("replay", span.size, err, shown=err.isatty())
            progress.start()
            # Blocking writes are fine: this loop runs nothing but the export.
            with open(partial, "wb") if partial else os.fdopen(os.dup(sys.stdout.fileno()), "wb") as sink:  # noqa: ASYNC230
                async for data in chunks(reader, the_plan, out, stats, span):
                    sink.write(data)
                    progress.advance(stats.records_read - progress.done)
            progress.advance(0, force=progress.shown)
        if partial and target:
            partial.replace(target)
        complete = True
    except (OSError, LookupError, KafkaError, sqlite3.Error) as exc:  # sqlite3: the spill's disk full
        print(f"error: the export failed and was not kept: {exc!r}", file=err)
    finally:
        if not complete and partial is not None:
            partial.unlink(missing_ok=True)
        summary = stats.summary(the_plan, span, time.monotonic() - began, complete)
        print(json.dumps(summary), file=sys.stdout if target else err, flush=True)
    return 0 if complete else 1
