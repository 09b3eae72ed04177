"""The ingest API's OpenAPI document: request bodies come from the msgspec structs that validate them.

The routes read their bodies themselves (one invalid fix must not reject a batch), so FastAPI does not see the body
types; ``body_of`` declares each route's body by reference and ``document`` adds the referenced schemas.
"""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import FastAPI

from producers.models import BatchBody, LocationFixBody, Problem, TechnicianUpdateBody

_BODIES: list[type[msgspec.Struct]] = [LocationFixBody, BatchBody, TechnicianUpdateBody]
_REF = "#/components/schemas/{name}"


def body_of(body: type[msgspec.Struct], example: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` of a route whose JSON body is ``body`` (whose schema ``document`` then adds)."""
    if body not in _BODIES:
        _BODIES.append(body)
    schema = {"$ref": _REF.format(name=body.__name__)}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema, "example": example}}}}


def document(app: FastAPI) -> None:
    """Make ``app.openapi()`` include the body structs' schemas and the ``Problem`` answer."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        _, structs = msgspec.json.schema_components(_BODIES, ref_template=_REF)
        components.update(structs)
        problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(problem.pop("$defs", {}))
        components["Problem"] = problem
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
