"""The auth handshake: a connection gets no data frame before its Origin, token and role are checked.

Order: the ``Origin`` header (browsers send it) must be the edge's own or in ``LOCSTREAM_EDGE_ALLOWED_ORIGINS``,
else the upgrade is refused (HTTP 403). The token may come, in this order of preference, as ``?token=`` (the seed's
contract; redacted from every log line by ``locstream.logs``), as a subprotocol ``locstream.bearer.<token>``, as an
``access_token`` cookie, or as the first message ``{"type": "auth", "token": ...}`` within
``LOCSTREAM_EDGE_AUTH_TIMEOUT_SECONDS`` (else 4001). An invalid token or a role that may not watch is closed with
1008 and a reason, an auth message nested deeper than 32 levels with 1007. Once the token is verified, the
connection is no longer pending in the server's gate (``locstream/serve.py``). The protocol version is 2 when the
client offers the subprotocol ``locstream.v2`` or asks ``?protocol=2``; the edge echoes the version subprotocol it
chose, never a token. ``refreshed_claims`` is the rule for a fresh token sent in-band by a session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import WebSocket

from locstream import bounded_json
from locstream.auth import AuthError, TokenVerifier
from locstream.serve import mark_authenticated
from schemas.claims import VIEWER_ROLES, Role, TokenClaims, refusal
from schemas.ws import (
    CLOSE_INVALID_PAYLOAD,
    CLOSE_POLICY_VIOLATION,
    CLOSE_UNAUTHENTICATED,
    SUBPROTOCOL_TOKEN_PREFIX,
    SUBPROTOCOL_V1,
    SUBPROTOCOL_V2,
)
from ws_edge.settings import EdgeSettings

MAX_AUTH_MESSAGE_BYTES = 16 * 1024


@dataclass(frozen=True)
class Handshake:
    claims: TokenClaims
    protocol: int  # 1 or 2
    cursor: str | None  # to resume from: ?cursor= or the auth message's


class ViewerRefusedError(Exception):
    """A token that may not watch the map: ``reason`` is safe to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def viewer_claims(token: str | None, verifier: TokenVerifier) -> TokenClaims:
    """The verified claims of a token that may watch the map; ``ViewerRefusedError`` otherwise."""
    try:
        claims = await verifier.verify(token)
    except AuthError as exc:
        raise ViewerRefusedError(exc.reason) from exc
    if (reason := refusal(claims, VIEWER_ROLES, "view the map")) is not None:
        raise ViewerRefusedError(reason)
    return claims


async def refreshed_claims(
    text: str, current: TokenClaims, verifier: TokenVerifier, roles: frozenset[Role] = VIEWER_ROLES
) -> TokenClaims:
    """The claims of a fresh token sent in-band (``{"type": "auth", "token": ...}``) by a session of ``current``:
    of the same tenant, with a role of ``roles``. ``ViewerRefusedError`` with the reason otherwise, and
    ``bounded_json.TooDeepError`` for a message nested too deep."""
    try:
        token, _ = auth_message(text)
    except bounded_json.TooDeepError:
        raise
    except ValueError as exc:
        raise ViewerRefusedError(str(exc)) from exc
    fresh = await viewer_claims(token, verifier)
    if fresh.tenant_id != current.tenant_id:
        raise ViewerRefusedError("a fresh token must be of the same tenant")
    if (reason := refusal(fresh, roles, "keep this session")) is not None:
        raise ViewerRefusedError(reason)
    return fresh


def expires_in(claims: TokenClaims, leeway_seconds: float, now: float) -> float:
    """Seconds until a session of ``claims`` is closed with 4001 unless it sends a fresh token (0 when past)."""
    return max(0.0, claims.exp + leeway_seconds - now)


def origin_allowed(origin: str, host: str | None, allowed: list[str]) -> bool:
    """The edge's own origin (same host and port as the request), a listed one, or any when ``*`` is listed."""
    if "*" in allowed or origin in allowed:
        return True
    return host is not None and urlsplit(origin).netloc.lower() == host.lower()


def auth_message(text: str) -> tuple[str, str | None]:
    """The token and cursor of ``{"type": "auth", "token": ..., "cursor": ...}``; ValueError otherwise
    (``bounded_json.TooDeepError`` for a message nested too deep)."""
    if len(text) > MAX_AUTH_MESSAGE_BYTES:
        raise ValueError("auth message too large")
    message = bounded_json.loads(text)
    if not isinstance(message, dict) or message.get("type") != "auth" or not isinstance(message.get("token"), str):
        raise ValueError('expected {"type": "auth", "token": ...}')
    cursor = message.get("cursor")
    return message["token"], cursor if isinstance(cursor, str) else None


@dataclass(frozen=True, slots=True)
class Offered:
    """What an upgrade request brings before any frame: its token (if it came in the request), the protocol version,
    the subprotocol to echo, and a cursor to resume from."""

    token: str | None
    protocol: int  # 1 or 2
    subprotocol: str | None  # the version subprotocol the edge echoes, never a token
    cursor: str | None


def offered(query: Mapping[str, str], subprotocols: list[str], cookies: Mapping[str, str]) -> Offered:
    """The token (``?token=``, a ``locstream.bearer.`` subprotocol, an ``access_token`` cookie, in that order), the
    version (``locstream.v2`` offered or ``?protocol=2``) and the cursor of an upgrade request."""
    chosen = (
        SUBPROTOCOL_V2 if SUBPROTOCOL_V2 in subprotocols else SUBPROTOCOL_V1 if SUBPROTOCOL_V1 in subprotocols else None
    )
    asked_v2 = chosen is None and query.get("protocol") == "2"
    protocol = 2 if chosen == SUBPROTOCOL_V2 or asked_v2 else 1
    bearer = next(
        (p[len(SUBPROTOCOL_TOKEN_PREFIX) :] for p in subprotocols if p.startswith(SUBPROTOCOL_TOKEN_PREFIX)), None
    )
    token = query.get("token") or bearer or cookies.get("access_token")
    return Offered(token or None, protocol, chosen, query.get("cursor"))


async def handshake(websocket: WebSocket, settings: EdgeSettings, verifier: TokenVerifier) -> Handshake | None:
    """Accept the upgrade and return who connected, or close (or refuse) with the reason and return None. ASGI:
    the paced replays' way in; the live feed does the same in ``ws_edge/session.py``."""
    origin = websocket.headers.get("origin")
    if origin is not None and not origin_allowed(origin, websocket.headers.get("host"), settings.allowed_origins):
        await websocket.close(code=CLOSE_POLICY_VIOLATION, reason="origin not allowed")  # before accept: HTTP 403
        return None
    offer = offered(websocket.query_params, list(websocket.scope.get("subprotocols", [])), websocket.cookies)
    token, cursor = offer.token, offer.cursor
    await websocket.accept(subprotocol=offer.subprotocol)
    if not token:
        try:
            message = await asyncio.wait_for(websocket.receive(), settings.auth_timeout_seconds)
        except TimeoutError:
            await websocket.close(code=CLOSE_UNAUTHENTICATED, reason="no token in time")
            return None
        if message["type"] == "websocket.disconnect":
            return None
        try:
            token, in_message_cursor = auth_message(message.get("text") or "")
        except bounded_json.TooDeepError as exc:
            await websocket.close(code=CLOSE_INVALID_PAYLOAD, reason=str(exc))
            return None
        except ValueError as exc:
            await websocket.close(code=CLOSE_UNAUTHENTICATED, reason=str(exc)[:120])
            return None
        cursor = in_message_cursor or cursor
    try:
        claims = await viewer_claims(token, verifier)
    except ViewerRefusedError as exc:
        await websocket.close(code=CLOSE_POLICY_VIOLATION, reason=exc.reason[:120])
        return None
    mark_authenticated(websocket.scope)  # no longer pending in the server's gate (locstream/serve.py)
    return Handshake(claims, offer.protocol, cursor)
