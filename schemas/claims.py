"""What a verified token says: who, of which tenant, with which locstream roles (``locstream.auth`` verifies it,
``locstream.claim_mapping`` reads an identity provider's claims into it)."""

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
    if claims.roles & allowed:
        return None
    names = ", ".join(sorted(role.value for role in claims.roles))
    return f"role{'s' * (len(claims.roles) > 1)} {names} may not {action}"


def only_technician(claims: TokenClaims) -> bool:
    """A technician's token (no other writing role): it may post only its own fixes."""
    return Role.TECHNICIAN in claims.roles and not (claims.roles & WRITER_ROLES) - {Role.TECHNICIAN}


class TokenClaims(BaseModel):
    """The verified claims; ``roles`` has at least one (a provider's token may map onto several)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    sub: Annotated[str, Field(strict=True, min_length=1, max_length=128)]
    tenant_id: Annotated[str, Field(strict=True, min_length=1, max_length=128)]
    roles: Annotated[frozenset[Role], Field(min_length=1)]
    exp: int
    iat: int
