"""JWT claims that every locstream token carries (HS256, verified by ``locstream.auth``)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class Role(StrEnum):
    DISPATCHER = "dispatcher"
    TECHNICIAN = "technician"
    DEVICE_GATEWAY = "device_gateway"
    ANALYST = "analyst"
    ADMIN = "admin"


# Who may watch the live map (WebSocket and the polling fallback).
VIEWER_ROLES = frozenset({Role.DISPATCHER, Role.ANALYST, Role.ADMIN})
# Who may export the history or replay it onto a map (replay/).
HISTORY_ROLES = frozenset({Role.ANALYST, Role.ADMIN})
# Who may post fixes and technician updates.
WRITER_ROLES = frozenset({Role.TECHNICIAN, Role.DEVICE_GATEWAY, Role.ADMIN})


def refusal(claims: TokenClaims, allowed: frozenset[Role], action: str) -> str | None:
    """Why ``claims`` may not ``action``, or None: the one role check of every endpoint and session. The reason
    (``role dispatcher may not export history``) is safe to show."""
    return None if claims.role in allowed else f"role {claims.role.value} may not {action}"


class TokenClaims(BaseModel):
    """The verified claims; ``sub`` may arrive as the seed's ``user_id``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    sub: Annotated[str, Field(strict=True, min_length=1, max_length=128)]
    tenant_id: Annotated[str, Field(strict=True, min_length=1, max_length=128)]
    role: Role
    exp: int
    iat: int
