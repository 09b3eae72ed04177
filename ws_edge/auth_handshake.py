"""The auth handshake: a connection gets no data frame before its token and role are verified.

The token comes as ``?token=`` (the seed's contract). A missing or invalid token, or a role that may
not watch the map, is closed with 1008 and a reason, right after the upgrade and before any frame.
"""

from __future__ import annotations

from fastapi import WebSocket

from locstream.auth import AuthError, verify_token
from locstream.settings import AuthSettings
from schemas.claims import VIEWER_ROLES, TokenClaims
from schemas.ws import CLOSE_POLICY_VIOLATION


async def authenticate(websocket: WebSocket, settings: AuthSettings) -> TokenClaims | None:
    """Accept the upgrade and return the verified claims, or close with 1008 and return None."""
    token = websocket.query_params.get("token")
    await websocket.accept()
    try:
        claims = verify_token(token, settings)
    except AuthError as exc:
        await websocket.close(code=CLOSE_POLICY_VIOLATION, reason=exc.reason[:120])
        return None
    if claims.role not in VIEWER_ROLES:
        await websocket.close(code=CLOSE_POLICY_VIOLATION, reason=f"role {claims.role.value} may not subscribe")
        return None
    return claims
