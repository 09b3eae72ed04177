"""What a browser on another origin sees of a service's GET endpoint: the CORS checks the projector's history and
the edge's polling fallback share (each service lists its origins in its own setting)."""

from __future__ import annotations

import httpx


def preflight(origin: str, method: str = "GET") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization",
    }


async def assert_listed_origin_may_read_with_its_token(client: httpx.AsyncClient, path: str, origin: str) -> None:
    """The preflight allows GET with an Authorization header; a refusal (no token: 401) is readable by the page."""
    allowed = await client.options(path, headers=preflight(origin))
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == origin
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    refused = await client.get(path, headers={"Origin": origin})
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == origin


async def assert_no_grant(client: httpx.AsyncClient, path: str, origin: str) -> None:
    """Neither the preflight nor the answer grants ``origin`` anything (the browser then withholds the answer)."""
    asked = await client.options(path, headers=preflight(origin))
    assert "access-control-allow-origin" not in asked.headers
    answer = await client.get(path, headers={"Origin": origin})
    assert answer.status_code == 401 and "access-control-allow-origin" not in answer.headers
