"""The position POSTs, dispatched without FastAPI's routing, dependency solving and response validation.

A phone's fix is the API's hot path: FastAPI's machinery around a route cost about half of a single-fix POST's
CPU (py-spy). ``HotPath`` is an ASGI middleware that recognises the two position routes and calls the very same
route functions (``producers.routes.post_location`` and ``post_batch``) after the same two checks FastAPI makes
first: the path's technician id and the bearer token. Refusals are rendered by the app's own problem format.
Everything else, the OpenAPI document included, goes through FastAPI unchanged.

The paths are those the routes declare (``producers/routes.py``: the declaration says it is served here), matched
with the same patterns FastAPI compiled for them: a route moved or renamed there moves here.
"""

from __future__ import annotations

import re

from fastapi import HTTPException, status
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from locstream.http import bearer_token, problem_response
from producers.models import technician_id_problem
from producers.routes import ingest_of, post_batch, post_location, router


def _declared(endpoint: object) -> re.Pattern[str]:
    """The path pattern FastAPI compiled for the POST route of ``endpoint``."""
    (route,) = (
        r for r in router.routes if isinstance(r, APIRoute) and r.endpoint is endpoint and "POST" in (r.methods or ())
    )
    return route.path_regex


_LOCATION = _declared(post_location)
_BATCH = _declared(post_batch)


def _checked_technician_id(technician_id: str) -> str:
    """The path's technician id, or 422 with the rule (``producers.models.technician_id_problem``)."""
    if (problem := technician_id_problem(technician_id)) is not None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=problem)
    return technician_id


class HotPath:
    """ASGI middleware: POSTs to the position routes skip FastAPI; every other request reaches ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        location = _LOCATION.match(path)
        if location is None and _BATCH.match(path) is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        response: Response
        try:
            technician_id = _checked_technician_id(location["technician_id"]) if location is not None else None
            claims = await ingest_of(request).claims_of(request, bearer_token(request))
            if technician_id is None:
                response = await post_batch(request, claims)
            else:
                response = _json(await post_location(technician_id, request, claims))
        except HTTPException as exc:
            response = problem_response(exc)
        await response(scope, receive, send)


def _json(answer: BaseModel) -> Response:
    return Response(answer.model_dump_json(), status_code=status.HTTP_202_ACCEPTED, media_type="application/json")
