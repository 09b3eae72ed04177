"""deploy/nginx.conf as shipped, run by Debian's nginx in front of the real services, reached by a public name.

Only the two per-deployment includes are the test's own (``locstream/upstreams.conf`` with loopback ports,
``locstream/listen.conf``); the routing is the file compose mounts. Behind it: two ingest processes, a projector
on PostgreSQL, two edges and the geofencer. Chromium resolves ``fleet.example.test`` to the proxy
(``--host-resolver-rules``), so the page, its WebSocket and its history requests carry that Host and Origin.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from schemas.claims import Role
from tests.support.browser import chromium, shot, sign_in
from tests.support.ports import free_port
from tests.support.stack import Service, Stack, eventually

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
HAS_NGINX = Path(NGINX).exists()
PUBLIC = "fleet.example.test"
TENANT = "acme-fiber"
API = "/api/v1/field-service"


@dataclass
class Proxied:
    stack: Stack
    port: int
    producers: list[Service]
    projector: Service
    edges: list[Service]
    geofencer: Service

    @property
    def public(self) -> str:
        return f"http://{PUBLIC}:{self.port}"

    def client(self) -> httpx.AsyncClient:
        """To the proxy on loopback, with the public name as Host (what a browser there would send)."""
        return httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.port}", headers={"Host": f"{PUBLIC}:{self.port}"}, timeout=15
        )


def nginx_config(directory: Path, listen: int, upstreams: dict[str, list[int]]) -> Path:
    """A main nginx.conf that includes deploy/nginx.conf unchanged, and the two includes of this deployment."""
    (directory / "locstream").mkdir(parents=True)
    (directory / "locstream/listen.conf").write_text(f"listen 127.0.0.1:{listen};\n")
    (directory / "locstream/upstreams.conf").write_text(
        "".join(
            f"upstream {name} {{ {' '.join(f'server 127.0.0.1:{port};' for port in ports)} keepalive 8; }}\n"
            for name, ports in upstreams.items()
        )
    )
    main = directory / "nginx.conf"
    temp = directory / "temp"
    temp.mkdir()
    main.write_text(
        f"""daemon off;
user root;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log info;
events {{ worker_connections 1024; }}
http {{
  access_log {directory}/access.log;
  client_body_temp_path {temp}/body;
  proxy_temp_path {temp}/proxy;
  fastcgi_temp_path {temp}/fastcgi;
  uwsgi_temp_path {temp}/uwsgi;
  scgi_temp_path {temp}/scgi;
  include {ROOT}/deploy/nginx.conf;
}}
"""
    )
    return main


@pytest.fixture
async def proxied(stack: Stack, postgres_dsn: str, tmp_path: Path) -> AsyncIterator[Proxied]:
    assert HAS_NGINX, "no nginx (apt-get install nginx; .ci/run does)"
    stack.env["LOCSTREAM_DATABASE_URL"] = postgres_dsn
    projector, *others = await asyncio.gather(
        *(stack.start(name) for name in ("projector", "producers", "producers", "ws-edge", "ws-edge", "geofencer"))
    )
    producers, edges, geofencer = others[0:2], others[2:4], others[4]
    port = free_port()
    main = nginx_config(
        tmp_path / "nginx",
        port,
        {
            "producers": [s.port for s in producers],
            "projector": [projector.port],
            "edges": [s.port for s in edges],
        },
    )
    check = await asyncio.to_thread(
        subprocess.run, [NGINX, "-t", "-c", str(main)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stderr
    nginx = subprocess.Popen([NGINX, "-c", str(main)], stdin=subprocess.DEVNULL)
    try:

        async def answers() -> bool:
            try:
                async with httpx.AsyncClient() as client:
                    await client.get(f"http://127.0.0.1:{port}/map")
            except httpx.TransportError:
                return False
            return True

        await eventually(answers, timeout=15, what="nginx to listen")
        yield Proxied(stack, port, producers, projector, edges, geofencer)
    finally:
        nginx.send_signal(signal.SIGQUIT)  # graceful: lets workers close the WebSockets
        try:
            nginx.wait(timeout=10)
        except subprocess.TimeoutExpired:
            nginx.kill()
            nginx.wait()


async def _post_fix(proxied: Proxied, technician: str, latitude: float, longitude: float) -> None:
    token = proxied.stack.token(TENANT, Role.DEVICE_GATEWAY)
    async with proxied.client() as client:
        answer = await client.post(
            f"{API}/technicians/{technician}/location",
            json={"latitude": latitude, "longitude": longitude},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert answer.status_code == 202, answer.text


def _at(technician: str, lat: float, lon: float) -> str:
    return (
        f"(() => {{ const p = window.locstreamMap.at('{technician}'); if (!p) return false;"
        f" return Math.abs(p[0] - {lat}) < 1e-9 && Math.abs(p[1] - {lon}) < 1e-9; }})()"
    )


async def test_the_map_on_a_public_name_goes_live_sees_a_fix_and_survives_an_edge_killed(proxied: Proxied) -> None:
    await _post_fix(proxied, "tech-ada", 6.5244, 3.3792)
    async with chromium(f"--host-resolver-rules=MAP {PUBLIC} 127.0.0.1") as browser:
        page = await browser.new_page(viewport={"width": 1000, "height": 700})
        token = proxied.stack.token(TENANT, Role.DISPATCHER, ttl=3600)
        await sign_in(page, f"{proxied.public}/map?reconnect_ms=200&max_reconnect_ms=800", token)
        await page.wait_for_function(_at("tech-ada", 6.5244, 3.3792), timeout=15_000)
        await _post_fix(proxied, "tech-ada", 6.5300, 3.3800)  # through the proxy, to either ingest process
        await page.wait_for_function(_at("tech-ada", 6.53, 3.38), timeout=10_000)

        # Kill each edge in turn behind the proxy: the page resumes on the other, and a fix posted meanwhile arrives.
        stack = proxied.stack
        for number in range(2):
            proxied.edges[number].kill9()
            latitude = 6.54 + number / 100
            await _post_fix(proxied, "tech-ada", latitude, 3.39)
            await page.wait_for_function(_at("tech-ada", latitude, 3.39), timeout=20_000)
            proxied.edges[number] = await stack.start("ws-edge", port=proxied.edges[number].port)
        await shot(page, "proxy-map-live")
        assert await page.text_content("#badge") == "Live"


async def test_device_set_up_urls_name_the_public_host_and_operators_endpoints_stay_inside(proxied: Proxied) -> None:
    admin = {"Authorization": f"Bearer {proxied.stack.token(TENANT, Role.ADMIN)}"}
    async with proxied.client() as client:
        registered = await client.post(f"{API}/devices", json={"technician_id": "tech-ada"}, headers=admin)
        assert registered.status_code == 201, registered.text
        setup = registered.json()["setup"]
        urls = [url for app in setup.values() for key, url in app.items() if "url" in key or "endpoint" in key]
        assert urls and all(url.startswith(f"{proxied.public}/api/v1/ingest/") for url in urls), urls

        for path in ("/metrics", "/readyz", "/map/../metrics", "/%2e%2e/metrics", "/map/%2E%2E/readyz", "//metrics"):
            answer = await client.get(path, headers=admin)
            assert answer.status_code in (400, 404), (path, answer.status_code)
            assert "python_gc" not in answer.text and "brokers" not in answer.text, path
    for service in (*proxied.producers, proxied.projector, *proxied.edges, proxied.geofencer):
        async with httpx.AsyncClient() as own:
            assert (await own.get(f"{service.url}/readyz")).status_code == 200, service.name
            assert (await own.get(f"{service.url}/metrics", headers=admin)).status_code == 200, service.name


async def test_forged_forwarding_headers_are_ignored_from_anyone_but_the_proxy(proxied: Proxied) -> None:
    admin = {"Authorization": f"Bearer {proxied.stack.token(TENANT, Role.ADMIN)}"}
    forged = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example", "X-Forwarded-For": "203.0.113.9"}
    # Through the proxy: it sets X-Forwarded-Proto itself (the scheme it was reached by).
    async with proxied.client() as client:
        answer = await client.post(f"{API}/devices", json={"technician_id": "t1"}, headers={**admin, **forged})
    assert answer.json()["setup"]["overland"]["receiver_endpoint"].startswith(f"{proxied.public}/")
    # Straight to an ingest process from a loopback address that is not the trusted proxy (127.0.0.1).
    direct = proxied.producers[0]
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(transport=transport, timeout=15) as client:
        answer = await client.post(
            f"{direct.url}{API}/devices", json={"technician_id": "t2"}, headers={**admin, **forged}
        )
    assert answer.status_code == 201, answer.text
    assert answer.json()["setup"]["overland"]["receiver_endpoint"].startswith(f"http://127.0.0.1:{direct.port}/")


async def test_the_trusted_proxies_setting_picks_whose_forwarding_headers_are_believed(proxied: Proxied) -> None:
    admin = {"Authorization": f"Bearer {proxied.stack.token(TENANT, Role.ADMIN)}"}
    api = await proxied.stack.start("producers", env={"LOCSTREAM_SERVER_TRUSTED_PROXIES": "127.0.0.2"})

    async def endpoint_from(source: str) -> str:
        transport = httpx.AsyncHTTPTransport(local_address=source)
        async with httpx.AsyncClient(transport=transport, timeout=15) as client:
            answer = await client.post(
                f"{api.url}{API}/devices",
                json={"technician_id": "t3"},
                headers={**admin, "X-Forwarded-Proto": "https", "Host": "fleet.example.test"},
            )
        assert answer.status_code == 201, answer.text
        endpoint: str = answer.json()["setup"]["overland"]["receiver_endpoint"]
        return endpoint

    assert await endpoint_from("127.0.0.2") == "https://fleet.example.test/api/v1/ingest/overland"
    assert await endpoint_from("127.0.0.1") == "http://fleet.example.test/api/v1/ingest/overland"  # not listed now


async def test_an_oversized_body_is_refused_by_the_proxy_before_any_service(proxied: Proxied) -> None:
    token = proxied.stack.token(TENANT, Role.DEVICE_GATEWAY)
    body = b'{"latitude": 1.0, "longitude": 2.0, "pad": "' + b"x" * 10_000_000 + b'"}'
    async with proxied.client() as client:
        answer = await client.post(
            f"{API}/technicians/tech-1/location",
            content=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
    assert answer.status_code == 413 and "<center>nginx" in answer.text  # nginx's page, not an ingest's JSON


async def test_an_upgrade_to_a_path_that_is_no_websocket_is_refused(proxied: Proxied) -> None:
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    async with proxied.client() as client:
        for path in ("/map", f"{API}/devices", "/client/locstream.js"):
            answer = await client.get(path, headers=headers)
            assert answer.status_code != 101, path
