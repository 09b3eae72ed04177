"""HTTP conventions shared by the services' FastAPI apps: bearer auth, readable 422s, and the service shell
(``/healthz``, ``/readyz``, ``/metrics``: ``Operations``)."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from locstream.auth import AuthError, TokenVerifier
from locstream.lifecycle import running
from locstream.settings import AuthSettings, MetricsSettings
from schemas.claims import Role, TokenClaims, refusal

bearer_scheme = HTTPBearer(
    auto_error=False, description="A JWT: from the identity provider (JWKS), or `locstream token ...` (HS256)."
)


def bearer_token(request: HTTPConnection) -> str | None:
    """The credentials of an ``Authorization: Bearer ...`` header, or None (what ``HTTPBearer`` reads)."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    credentials = credentials.strip()
    return credentials if scheme.lower() == "bearer" and credentials else None


def token_verifier(connection: HTTPConnection) -> TokenVerifier:
    """The app's one verifier (``prepare_app``), for requests and WebSocket sessions alike."""
    verifier: TokenVerifier = connection.app.state.token_verifier
    return verifier


async def verified_claims(request: HTTPConnection, token: str | None) -> TokenClaims:
    """The verified claims of ``token``, or 401 with the reason."""
    try:
        return await token_verifier(request).verify(token)
    except AuthError as exc:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, detail=exc.reason, headers={"WWW-Authenticate": "Bearer"}
        ) from exc


async def get_claims(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
) -> TokenClaims:
    """The verified claims of the request's bearer token, or 401 with the reason."""
    return await verified_claims(request, credentials.credentials if credentials else None)


Claims = Annotated[TokenClaims, Depends(get_claims)]


def require_role(claims: TokenClaims, allowed: frozenset[Role], action: str) -> None:
    """403 with the reason unless the token's role is one of ``allowed`` (``schemas.claims.refusal``)."""
    if (reason := refusal(claims, allowed, action)) is not None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=reason)


def _describe(err: dict[str, object]) -> str:
    loc = [str(part) for part in err["loc"]] if isinstance(err["loc"], (list, tuple)) else []
    if err["type"] == "json_invalid":  # its loc is ("body", character position)
        return f"body: {err['msg']} at character {loc[-1] if len(loc) > 1 else 0}"
    field = ".".join(part for part in loc if part != "body") or "body"
    return f"{field}: {err['msg']}"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 whose ``message`` names each offending field, beside FastAPI's usual ``detail`` list."""
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    message = "; ".join(_describe(err) for err in errors)
    detail = [{"loc": list(err["loc"]), "msg": err["msg"], "type": err["type"]} for err in errors]
    return JSONResponse(status_code=422, content={"message": message, "detail": detail})


def readiness_response(problems: list[str], **extra: object) -> JSONResponse:
    """``/readyz``: 200 ``{"ready": true, "reason": "ok"}``, or 503 with the problems joined as the reason."""
    body = {"ready": not problems, "reason": "; ".join(problems) or "ok", **extra}
    return JSONResponse(body, status_code=503 if problems else 200)


def _nothing() -> dict[str, object]:
    return {}


@dataclass(frozen=True)
class Operations:
    """What a service tells its operators, the same three endpoints for every service and for ``locstream dev``:
    ``/healthz`` (the process is up: ``{"status": "ok", **health()}``), ``/readyz`` (``problems()``, empty when
    ready; ``readiness_details()`` added to the body) and ``/metrics`` (every registry, one exposition)."""

    problems: Callable[[], list[str]]
    registries: Sequence[CollectorRegistry]
    health: Callable[[], dict[str, object]] = _nothing
    readiness_details: Callable[[], dict[str, object]] = _nothing


# Set in the scope of a request that came in on the metrics port (``OperationsPort``).
ON_OPERATIONS_PORT = "locstream.operations_port"
OPERATIONS_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})
SCRAPER_ROLES = frozenset({Role.ADMIN})


class OperationsPort:
    """ASGI wrapper for a server that also listens on ``LOCSTREAM_METRICS_PORT``: what arrives on that port reaches
    only ``/metrics``, ``/healthz`` and ``/readyz`` (marked ``ON_OPERATIONS_PORT``); anything else there is 404."""

    def __init__(self, app: ASGIApp, port: int) -> None:
        self.app, self.port = app, port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        if scope["type"] in ("http", "websocket") and server is not None and server[1] == self.port:
            if scope["type"] == "websocket":  # closed before it is accepted: the upgrade is refused (HTTP 403)
                await send({"type": "websocket.close", "code": 1008, "reason": "not on the metrics port"})
                return
            if scope["path"] not in OPERATIONS_PATHS:
                await PlainTextResponse("not found on the metrics port", status_code=404)(scope, receive, send)
                return
            scope = {**scope, ON_OPERATIONS_PORT: True}
        await self.app(scope, receive, send)


async def _may_scrape(request: Request, metrics: MetricsSettings) -> None:
    """On the service's own port: a scraper's LOCSTREAM_METRICS_TOKEN or an admin's JWT; 401/403 otherwise."""
    token = bearer_token(request)
    if metrics.token is not None and token is not None:
        if hmac.compare_digest(token.encode(), metrics.token.get_secret_value().encode()):
            return
    claims = await verified_claims(request, token)
    require_role(claims, SCRAPER_ROLES, "read metrics (they cover every tenant)")


def add_operations(app: FastAPI, operations: Operations, metrics: MetricsSettings) -> None:
    """The service shell's endpoints (``Operations``) on ``app``; ``/metrics`` as ``metrics`` says."""

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, object]:
        return {"status": "ok", **operations.health()}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        return readiness_response(operations.problems(), **operations.readiness_details())

    @app.get("/metrics", include_in_schema=False)
    async def metrics_exposition(request: Request) -> Response:
        if not request.scope.get(ON_OPERATIONS_PORT):
            if metrics.port is not None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, detail="/metrics is on the metrics port")
            await _may_scrape(request, metrics)
        exposition = b"".join(generate_latest(registry) for registry in operations.registries)
        return Response(exposition, media_type=CONTENT_TYPE_LATEST)


def problem_response(exc: StarletteHTTPException) -> JSONResponse:
    """Every refusal carries ``message`` (the reason, naming the field when there is one) beside ``detail``."""
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return JSONResponse({"message": message, "detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return problem_response(exc)


def prepare_app(app: FastAPI, auth: AuthSettings) -> None:
    """What every locstream app shares: the auth settings its bearer dependency reads, the error format."""
    app.state.auth_settings = auth
    app.state.token_verifier = TokenVerifier(auth)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


def service_app(title: str, settings: object, auth: AuthSettings | None = None) -> FastAPI:
    """A FastAPI app whose lifespan runs ``app.state.services`` (set by the caller) in order.

    ``app.state.settings`` tells ``locstream <service>`` where to listen.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with running(*app.state.services):
            yield

    app = FastAPI(title=title, lifespan=lifespan)
    app.state.settings = settings
    app.state.services = []
    if auth is not None:
        prepare_app(app, auth)
    return app
