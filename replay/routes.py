"""``GET /api/v1/field-service/history/export``: the same exports as ``locstream replay``, streamed over HTTP.

Everything that can be refused is refused before the response starts (401/403 for the token, 400 for the format,
422 for the range, 503 when the broker does not answer). Once it has started, the body is sent chunked as it is
read; a failure then aborts the connection before the last chunk, so a client never takes a cut export for a
whole one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from aiokafka.errors import KafkaError
from fastapi import APIRouter, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse

from locstream.http import Claims, require_role
from locstream.settings import KafkaSettings
from replay.export import ExportPlan, ExportRefusedError, ExportStats, chunks, plan, writer_for
from replay.formats import MEDIA_TYPES, SUFFIXES, Exporter
from replay.reader import HistoryReader, Span
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
) -> StreamingResponse:
    require_role(claims, HISTORY_ROLES, "export history")
    kafka: KafkaSettings = request.app.state.history_kafka
    try:
        the_plan = plan(claims.tenant_id, start, end, format, technician_id or [], kafka)
        out = writer_for(the_plan)
    except ExportRefusedError as exc:
        raise HTTPException(exc.status, exc.reason) from exc
    reader = HistoryReader(kafka)
    try:
        await reader.start()
        span = await reader.span(claims.tenant_id, the_plan.range.start, the_plan.range.end)
    except (KafkaError, LookupError, OSError) as exc:
        await reader.stop()
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"the broker did not answer: {exc!r}") from exc
    name = f"{claims.tenant_id}-{the_plan.range.start:%Y%m%dT%H%M%SZ}.{SUFFIXES[format]}"
    return StreamingResponse(
        _body(reader, the_plan, span, out),
        media_type=MEDIA_TYPES[format],
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Locstream-Offsets": f"{span.first}-{span.end}",
        },
    )  # the reader stops when the body ends, however it ends


async def _body(reader: HistoryReader, the_plan: ExportPlan, span: Span, out: Exporter) -> AsyncIterator[bytes]:
    try:
        async for data in chunks(reader, the_plan, out, ExportStats(), span):
            yield data
    finally:
        await reader.stop()


def install(app: FastAPI, kafka: KafkaSettings) -> None:
    """Add the export route; it reads ``kafka``'s topic."""
    app.state.history_kafka = kafka
    app.include_router(router)
