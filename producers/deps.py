"""FastAPI dependencies of the ingest API, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials

from locstream.http import bearer_scheme
from schemas.claims import TokenClaims

if TYPE_CHECKING:
    from producers.routes import Ingest


async def get_claims(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
) -> TokenClaims:
    """The verified claims of the request's bearer token, or 401 with the reason; 429 for an address that failed
    too often lately (``Ingest.authenticating``)."""
    ingest: Ingest = request.app.state.ingest
    return await ingest.claims_of(request, credentials.credentials if credentials else None)


Claims = Annotated[TokenClaims, Depends(get_claims)]
