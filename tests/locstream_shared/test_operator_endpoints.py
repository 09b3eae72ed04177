"""Operator endpoints are closed to anonymous callers: ``/ws/stats`` shows a dispatcher its tenant's figures and
an admin the node's; ``/metrics`` (every tenant) needs an admin's token or the scraper's, or lives on a port of its
own (``LOCSTREAM_METRICS_PORT``) where nothing else is served."""

from __future__ import annotations

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from schemas.claims import Role
from tests.support.maps import open_map
from tests.support.ports import free_port
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

STATS = "/api/v1/field-service/ws/stats"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_ws_stats_shows_a_dispatcher_its_tenant_and_an_admin_the_node(stack: Stack) -> None:
    edge = await stack.start("ws-edge")
    maps = [await open_map(edge, stack.token(tenant)) for tenant in ("tenant-a", "tenant-a", "tenant-b")]
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as http:
        anonymous = await http.get(STATS)
        assert anonymous.status_code == 401 and anonymous.json()["message"] == "missing token"
        forged = await http.get(STATS, headers=_bearer(stack.token("tenant-a")[:-3] + "AAA"))
        assert forged.status_code == 401
        technician = await http.get(STATS, headers=_bearer(stack.token("tenant-a", Role.TECHNICIAN, sub="t1")))
        assert technician.status_code == 403 and "technician may not" in technician.json()["message"]
        mine = (await http.get(STATS, headers=_bearer(stack.token("tenant-a")))).json()
        assert (mine["scope"], mine["tenant_id"], mine["active_connections"]) == ("tenant", "tenant-a", 2)
        assert "active_tenants" not in mine  # nothing about the node's other tenants
        theirs = (await http.get(STATS, headers=_bearer(stack.token("tenant-b", Role.ANALYST)))).json()
        assert (theirs["tenant_id"], theirs["active_connections"]) == ("tenant-b", 1)
        node = (await http.get(STATS, headers=stack.admin_headers())).json()
        assert (node["scope"], node["active_connections"]) == ("node", 3)
    for ws, _ in maps:
        await ws.close()


async def test_metrics_need_an_admin_or_the_scrapers_token(stack: Stack) -> None:
    scrape_token = "scrape-token-of-the-prometheus-job-0123456789"
    api = await stack.start("producers", env={"LOCSTREAM_METRICS_TOKEN": scrape_token})
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as http:
        assert (await http.get("/metrics")).status_code == 401
        assert (await http.get("/metrics", headers=_bearer("wrong-" + scrape_token))).status_code == 401
        dispatcher = await http.get("/metrics", headers=_bearer(stack.token("tenant-a")))
        assert dispatcher.status_code == 403 and "every tenant" in dispatcher.json()["message"]
        for headers in (stack.admin_headers(), _bearer(scrape_token)):
            answer = await http.get("/metrics", headers=headers)
            assert answer.status_code == 200 and "locstream_ingest_events_total" in answer.text


async def test_a_metrics_port_serves_the_operations_endpoints_alone(stack: Stack) -> None:
    metrics_port = free_port()
    edge = await stack.start("ws-edge", env={"LOCSTREAM_METRICS_PORT": str(metrics_port)})
    operations = f"http://127.0.0.1:{metrics_port}"
    async with httpx.AsyncClient(timeout=10) as http:
        on_its_port = await http.get(f"{operations}/metrics")  # no token: the port is the boundary
        assert on_its_port.status_code == 200 and "locstream_edge_connections" in on_its_port.text
        assert (await http.get(f"{operations}/readyz")).status_code in (200, 503)
        assert (await http.get(f"{operations}/healthz")).status_code == 200
        public = await http.get(f"{edge.url}/metrics", headers=stack.admin_headers())
        assert public.status_code == 404 and "metrics port" in public.json()["message"]
        for path in (STATS, "/api/v1/field-service/technicians/locations/active", "/map", "/docs"):
            answer = await http.get(f"{operations}{path}", headers=stack.admin_headers())
            assert answer.status_code == 404, path
    with pytest.raises(InvalidStatus) as refused:  # no map on the metrics port either
        await websockets.connect(
            f"ws://127.0.0.1:{metrics_port}/api/v1/field-service/ws/technician-locations?token={stack.token('t')}"
        )
    assert refused.value.response.status_code == 403
    ws, initial = await open_map(edge, stack.token("tenant-a"))  # the service's own port still serves the map
    assert initial["type"] == "initial_state"
    await ws.close()
