"""``GET /api/v1/field-service/history/export``: the same exports as ``locstream replay``, streamed over HTTP.

Everything that can be refused is refused before the response starts (401/403 for the token, 400 for the format,
422 for the range, 429 past the exports at once per tenant or per process, 503 when the broker does not answer).
Once it has started, the body is sent chunked as it is read; a failure then aborts the connection before the last
chunk, so a client never takes a cut export for a whole one. However it ends, the export's slot, consumer and
temporary file are let go (``_Export``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from aiokafka.errors import KafkaError
from fastapi import APIRouter, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from locstream.http import Claims, require_role
from locstream.settings import KafkaSettings
from locstream.work_slots import NoSlotError, Slot, WorkSlots
from replay.export import ExportRefusedError, ExportStats, chunks, plan, writer_for
from replay.formats import MEDIA_TYPES, SUFFIXES, Exporter
from replay.reader import HistoryReader
from schemas.claims import HISTORY_ROLES

router = APIRouter(prefix="/api/v1/field-service", tags=["history"])


@router.get(
    "/history/export",
    summary="The tenant's location history of [from, to) (append time), streamed as NDJSON, CSV, GeoJSON, GPX "
    "or Parquet",
    responses={
        200: {"description": "The export, chunked", "content": {media: {} for media in MEDIA_TYPES.values()}},
        400: {"description": "Unknown format"},
        403: {"description": "Not an analyst or admin"},
        422: {"description": "Malformed times, from not before to, or a range outside retention"},
        429: {"description": "Too many exports at once for the tenant or the process; retry after Retry-After s"},
        503: {"description": "The broker did not answer"},
    },
)
async def history_export(
    request: Request,
    claims: Claims,
    start: Annotated[str, Query(alias="from", description="ISO 8601 with offset, inclusive")],
    end: Annotated[str, Query(alias="to", description="ISO 8601 with offset, exclusive")],
    technician_id: Annotated[list[str] | None, Query(description="only these technicians (repeatable)")] = None,
    format: Annotated[str, Query(description="ndjson, csv, geojson, gpx or parquet")] = "ndjson",
    quality: Annotated[
        str, Query(description="good (default): the good fixes; flagged: only the flagged fixes; all: every fix")
    ] = "good",
) -> StreamingResponse:
    require_role(claims, HISTORY_ROLES, "export history")
    kafka: KafkaSettings = request.app.state.history_kafka
    try:
        the_plan = plan(claims.tenant_id, start, end, format, technician_id or [], kafka, quality)
    except ExportRefusedError as exc:
        raise HTTPException(exc.status, exc.reason) from exc
    try:
        export = _Export(request.app.state.export_slots.take(claims.tenant_id))
    except NoSlotError as exc:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS, exc.reason, headers={"Retry-After": str(exc.retry_after)}
        ) from exc
    try:
        out = export.out = writer_for(the_plan)
        reader = export.reader = HistoryReader(kafka)
        await reader.start()
        span = await reader.span(claims.tenant_id, the_plan.range.start, the_plan.range.end)
        name = f"{claims.tenant_id}-{the_plan.range.start:%Y%m%dT%H%M%SZ}.{SUFFIXES[format]}"
        return _ExportResponse(
            chunks(reader, the_plan, out, ExportStats(), span),
            export,
            media_type=MEDIA_TYPES[format],
            headers={"Content-Disposition": attachment(name), "X-Locstream-Offsets": f"{span.first}-{span.end}"},
        )
    except ExportRefusedError as exc:
        await export.release()
        raise HTTPException(exc.status, exc.reason) from exc
    except (KafkaError, LookupError, OSError) as exc:
        await export.release()
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"the broker did not answer: {exc!r}") from exc
    except BaseException:
        await export.release()
        raise


EXPORT_STALL_SECONDS = 30.0  # a client that takes nothing of the body for this long loses its export and its slot


@dataclass
class _Export:
    """What one export holds: its place among the exports at once, its format's writer (a temporary file for the
    grouped formats) and its Kafka consumer; ``release`` lets go of all three, once, whatever happened."""

    slot: Slot
    out: Exporter | None = None
    reader: HistoryReader | None = None

    async def release(self) -> None:
        try:
            if self.out is not None:
                self.out.close()
            if self.reader is not None:
                await self.reader.stop()
        finally:
            self.slot.release()


class _ExportResponse(StreamingResponse):
    """Releases the export however the response ends: a body never started (the client left before the headers
    went out) never runs its generator's ``finally``, so it is released here; and a client that stops reading for
    ``EXPORT_STALL_SECONDS`` is dropped, so a few slow readers cannot hold every place of the process."""

    def __init__(self, content: AsyncIterator[bytes], export: _Export, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._export = export

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_in_time(message: Message) -> None:
            async with asyncio.timeout(EXPORT_STALL_SECONDS):
                await send(message)

        try:
            await super().__call__(scope, receive, send_in_time)
        finally:
            await self._export.release()


def attachment(name: str) -> str:
    """``Content-Disposition`` for a download named ``name`` in any script (RFC 6266): ``filename*`` in UTF-8
    (RFC 8187), and an ASCII ``filename`` for the clients that read only that one."""
    fallback = "".join(char if " " <= char <= "~" and char not in '"\\%' else "_" for char in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def install(app: FastAPI, kafka: KafkaSettings, slots: WorkSlots) -> None:
    """Add the export route; it reads ``kafka``'s topic, as many exports at once as ``slots`` allows."""
    app.state.history_kafka = kafka
    app.state.export_slots = slots
    app.include_router(router)
