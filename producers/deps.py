"""FastAPI dependencies of the ingest API, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials

from locstream.http import bearer_scheme, token_verifier, verified_claims
from schemas.claims import TokenClaims

if TYPE_CHECKING:
    from producers.routes import Ingest


async def get_claims(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
) -> TokenClaims:
    """The verified claims of the request's bearer token, or 401 with the reason; 429 for an address that failed
    too often lately (``Ingest.authenticating``)."""
    ingest: Ingest = request.app.state.ingest
    token = credentials.credentials if credentials else None
    async with ingest.authenticating(request, known=token_verifier(request).knows(token)):
        return await verified_claims(request, token)


Claims = Annotated[TokenClaims, Depends(get_claims)]
