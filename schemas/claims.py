"""What a verified token says: who, of which tenant, with which locstream roles (``locstream.auth`` verifies it,
``locstream.claim_mapping`` reads an identity provider's claims into it)."""

from __future__ import annotations

import unicodedata
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

MAX_CLAIM_ID_CHARS = 128
CLAIM_ID_RULE = f"1 to {MAX_CLAIM_ID_CHARS} characters, no control or format characters, no space at either end"


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


def claim_id_problem(text: str) -> str | None:
    """Why ``text`` cannot be a tenant id or a subject, or None: the one rule every service applies when it
    verifies a token. Any script is welcome (a tenant may be named in Cyrillic), but not what breaks a header, a log
    line or a file name: control characters (CR, LF, NUL), format characters (bidi overrides, zero-width), lone
    surrogates, and spaces at either end, which look like another tenant's name."""
    if not 0 < len(text) <= MAX_CLAIM_ID_CHARS or text != text.strip():
        return CLAIM_ID_RULE
    if any(unicodedata.category(char)[0] == "C" for char in text):  # Cc, Cf, Cs, Co, Cn
        return CLAIM_ID_RULE
    return None


def _claim_id(text: str) -> str:
    if (problem := claim_id_problem(text)) is not None:
        raise ValueError(problem)
    return text


ClaimId = Annotated[str, Field(strict=True, min_length=1, max_length=MAX_CLAIM_ID_CHARS), AfterValidator(_claim_id)]


class TokenClaims(BaseModel):
    """The verified claims; ``roles`` has at least one (a provider's token may map onto several)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    sub: ClaimId
    tenant_id: ClaimId
    roles: Annotated[frozenset[Role], Field(min_length=1)]
    exp: int
    iat: int
