"""What both peers share, so that they differ only in how a location update reaches the sockets.

- The HTTP and WebSocket contract of locstream (the seed's URLs and frames), with the same JWT verification
  (``locstream.auth.TokenVerifier`` through ``locstream.http``), the same body model and the same role rules.
- The app around it (``peer_app``): the store opened for the app's life, ``/healthz``, and the location POST, which
  saves the fix and hands it to the peer's own ``publish``; each peer adds its WebSocket endpoint.
- The seed's persistence: one SQLite table of each technician's current position keyed by (tenant, technician),
  through aiosqlite (the async driver SQLAlchemy uses for SQLite, as the seed's ``await session.commit()``
  implies), one writer and one reader connection, with the projector's durability settings (WAL,
  ``synchronous=FULL``): a 202 means the row is on disk. The last fix posted wins, as in the seed.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path as FsPath
from typing import Annotated, Any

import aiosqlite
import uvicorn
from fastapi import FastAPI, HTTPException, Path, WebSocket, status
from pydantic import AwareDatetime, BaseModel, Field

from locstream.auth import AuthError, TokenVerifier
from locstream.http import Claims, prepare_app
from locstream.settings import AuthSettings
from schemas.claims import VIEWER_ROLES, WRITER_ROLES, TokenClaims, only_technician, refusal

PREFIX = "/api/v1/field-service"
WS_PATH = f"{PREFIX}/ws/technician-locations"
TechnicianId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")]
Location = dict[str, Any]  # technician_id, technician_name, latitude, longitude, last_update, status


class LocationFixRequest(BaseModel):
    """The seed's location body as a FastAPI app of its design declares it: a pydantic model, FastAPI validates."""

    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    accuracy_meters: float | None = None
    altitude: float | None = None
    speed_kmh: float | None = None
    heading: float | None = None
    activity: str | None = None
    job_id: str | None = None
    recorded_at: AwareDatetime | None = None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS technician_positions (
    tenant_id TEXT NOT NULL,
    technician_id TEXT NOT NULL,
    technician_name TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'unknown',
    latitude REAL NOT NULL,
    longitude REAL NOT NULL,
    accuracy_meters REAL, altitude REAL, speed_kmh REAL, heading REAL, activity TEXT, job_id TEXT,
    last_update TEXT NOT NULL,
    PRIMARY KEY (tenant_id, technician_id)
)"""
_FIX_COLUMNS = ("latitude", "longitude", "accuracy_meters", "altitude", "speed_kmh", "heading", "activity", "job_id")
_UPSERT = f"""
INSERT INTO technician_positions (tenant_id, technician_id, technician_name, {", ".join(_FIX_COLUMNS)}, last_update)
VALUES (?, ?, ?, {", ".join("?" for _ in _FIX_COLUMNS)}, ?)
ON CONFLICT (tenant_id, technician_id) DO UPDATE SET
    {", ".join(f"{c} = excluded.{c}" for c in (*_FIX_COLUMNS, "last_update"))}
RETURNING technician_name, status"""
_SELECT = """SELECT technician_id, technician_name, latitude, longitude, last_update, status
FROM technician_positions WHERE tenant_id = ? ORDER BY technician_id"""


def iso_z(moment: datetime) -> str:
    """``2026-11-26T08:30:00.123456Z``: the instant in UTC, microseconds kept, as the map expects."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


class Store:
    """The table, through one writer and one reader connection (aiosqlite runs each on its own thread).

    A write is ``execute_fetchall`` (the upsert runs to completion in one call, so concurrent requests never leave
    a statement in progress for another's commit) then ``commit``: when a request's commit returns, its row is
    durable. Reads use their own connection, so a new map's ``initial_state`` does not queue behind the writes.
    """

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self._writer = writer
        self._reader = reader

    @classmethod
    async def open(cls, path: FsPath) -> Store:
        writer = await aiosqlite.connect(path)
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=10000"):
            await writer.execute(f"PRAGMA {pragma}")
        await writer.execute(_SCHEMA)
        await writer.commit()
        reader = await aiosqlite.connect(path)
        await reader.execute("PRAGMA busy_timeout=10000")
        return cls(writer, reader)

    async def close(self) -> None:
        await self._reader.close()
        await self._writer.close()

    async def save_fix(self, tenant_id: str, technician_id: str, fix: LocationFixRequest) -> Location:
        """Write the technician's current position and commit; answer the map's view of it."""
        last_update = iso_z(fix.recorded_at or datetime.now(UTC))
        values = [getattr(fix, column) for column in _FIX_COLUMNS]
        (row,) = await self._writer.execute_fetchall(
            _UPSERT, (tenant_id, technician_id, technician_id, *values, last_update)
        )
        await self._writer.commit()
        return {
            "technician_id": technician_id,
            "technician_name": row[0],
            "latitude": fix.latitude,
            "longitude": fix.longitude,
            "last_update": last_update,
            "status": row[1],
        }

    async def tenant_locations(self, tenant_id: str) -> list[Location]:
        """The tenant's current positions, as ``initial_state.data``."""
        rows = await self._reader.execute_fetchall(_SELECT, (tenant_id,))
        keys = ("technician_id", "technician_name", "latitude", "longitude", "last_update", "status")
        return [dict(zip(keys, row, strict=True)) for row in rows]


def authorize_write(claims: TokenClaims, technician_id: str) -> None:
    """locstream's rule: writer roles only, and a technician posts for itself."""
    if (reason := refusal(claims, WRITER_ROLES, "do this")) is not None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=reason)
    if only_technician(claims) and claims.sub != technician_id:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="a technician may post only for itself")


def accepted(technician_id: str) -> dict[str, str]:
    return {"status": "accepted", "event_id": str(uuid.uuid4()), "technician_id": technician_id}


async def accept_viewer(websocket: WebSocket, settings: AuthSettings) -> TokenClaims | None:
    """Accept the upgrade, then verify ``?token=``: a bad token or a non-viewer role is closed with 1008."""
    await websocket.accept()
    try:
        claims = await TokenVerifier(settings).verify(websocket.query_params.get("token"))
    except AuthError as exc:
        await websocket.close(code=status.WS_1008_POLICY_VIOLATION, reason=exc.reason[:120])
        return None
    if (reason := refusal(claims, VIEWER_ROLES, "watch")) is not None:
        await websocket.close(code=status.WS_1008_POLICY_VIOLATION, reason=reason)
        return None
    return claims


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--db", type=FsPath, required=True, help="SQLite file of current positions (created if missing)")
    return p


def serve(app: FastAPI, host: str, port: int) -> None:
    uvicorn.run(app, host=host, port=port, log_level="warning", ws_max_size=65536)


@dataclass
class Peer:
    """A peer's app, the auth settings it verifies tokens with, and its store (open while the app runs)."""

    app: FastAPI
    auth: AuthSettings
    _store: list[Store]

    @property
    def store(self) -> Store:
        return self._store[0]


def peer_app(
    title: str,
    db_path: FsPath,
    publish: Callable[[str, Location], Awaitable[None]],
    running: Callable[[], AbstractAsyncContextManager[object]] = nullcontext,
) -> Peer:
    """The app both peers share: the store opened (and ``running()`` entered) for the app's life, ``/healthz``, and
    the location POST, which saves the fix and calls ``publish(tenant_id, location)``, the peer's own way."""
    auth = AuthSettings()
    store: list[Store] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store.append(await Store.open(db_path))
        try:
            async with running():
                yield
        finally:
            await store.pop().close()

    app = FastAPI(title=title, lifespan=lifespan)
    prepare_app(app, auth)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(f"{PREFIX}/technicians/{{technician_id}}/location", status_code=status.HTTP_202_ACCEPTED)
    async def update_location(technician_id: TechnicianId, body: LocationFixRequest, claims: Claims) -> dict[str, str]:
        authorize_write(claims, technician_id)
        location = await store[0].save_fix(claims.tenant_id, technician_id, body)
        await publish(claims.tenant_id, location)
        return accepted(technician_id)

    return Peer(app, auth, store)
