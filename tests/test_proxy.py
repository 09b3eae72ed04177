"""deploy/nginx.conf as shipped, run by Debian's nginx in front of the real services, reached by a public name.

Only the two per-deployment includes are the test's own (``locstream/upstreams.conf`` with loopback ports,
``locstream/listen.conf``); the routing is the file compose mounts. Behind it: two ingest processes, a projector
on PostgreSQL, two edges and the geofencer. Chromium resolves ``fleet.example.test`` to the proxy
(``--host-resolver-rules``), so the page, its WebSocket and its history requests carry that Host and Origin.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import textwrap
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import websockets
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from launch.certificates import TlsFiles, generate
from schemas.claims import Role
from schemas.events import Event
from tests.support.browser import chromium, fix_at, shot, sign_in
from tests.support.events import location
from tests.support.kafka_io import append, clock_past
from tests.support.maps import WS_PATH, recv_json
from tests.support.ports import free_port
from tests.support.stack import Service, Stack, eventually

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
HAS_NGINX = Path(NGINX).exists()
PUBLIC = "fleet.example.test"
TENANT = "acme-fiber"
API = "/api/v1/field-service"
EXPORTED = 200_000
PING_SECONDS = 2.0  # the edges' ping interval here (25 s in compose): an idle map is kept 3 intervals


@dataclass
class Proxied:
    stack: Stack
    port: int  # plain HTTP (deploy/nginx.conf serves on it; deploy/nginx-tls.conf redirects from it)
    producers: list[Service]
    projector: Service
    edges: list[Service]
    geofencer: Service
    tls_port: int | None = None
    tls: TlsFiles | None = None

    @property
    def public(self) -> str:
        """The site as its users reach it."""
        if self.tls_port is not None:
            return f"https://{PUBLIC}:{self.tls_port}"
        return f"http://{PUBLIC}:{self.port}"

    def client(self) -> httpx.AsyncClient:
        """To the proxy on loopback, with the public name as Host (what a browser there would send); over TLS, the
        certificate is verified against the test's CA (it names 127.0.0.1 too)."""
        if self.tls_port is not None and self.tls is not None:
            return httpx.AsyncClient(
                base_url=f"https://127.0.0.1:{self.tls_port}",
                headers={"Host": f"{PUBLIC}:{self.tls_port}"},
                verify=ssl.create_default_context(cafile=str(self.tls.ca)),
                timeout=15,
            )
        return httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.port}", headers={"Host": f"{PUBLIC}:{self.port}"}, timeout=15
        )


@dataclass(frozen=True)
class Site:
    """This deployment's deploy/nginx/site/: where the services are and where the proxy listens."""

    listen: int
    upstreams: dict[str, list[int]]
    tls_port: int | None = None
    tls: TlsFiles | None = None

    def write(self, directory: Path) -> None:
        directory.mkdir(parents=True)
        (directory / "listen.conf").write_text(f"listen 127.0.0.1:{self.listen};\n")
        (directory / "upstreams.conf").write_text(
            "".join(
                f"upstream {name} {{ {' '.join(f'server 127.0.0.1:{port};' for port in ports)} keepalive 8; }}\n"
                for name, ports in self.upstreams.items()
            )
        )
        if self.tls is not None:
            (directory / "tls.conf").write_text(
                f"listen 127.0.0.1:{self.tls_port} ssl;\nserver_name {PUBLIC};\n"
                f"ssl_certificate {self.tls.broker};\nssl_certificate_key {self.tls.broker};\n"
            )
            (directory / "redirect.conf").write_text(f"return 301 https://{PUBLIC}:{self.tls_port}$request_uri;\n")


def nginx_config(directory: Path, site_conf: str, site: Site) -> Path:
    """A main nginx.conf including ``deploy/<site_conf>`` unchanged, deploy/nginx as ``locstream/`` (as compose
    mounts it) with this deployment's ``site/``."""
    shutil.copytree(ROOT / "deploy/nginx", directory / "locstream", ignore=shutil.ignore_patterns("site"))
    site.write(directory / "locstream/site")
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
  include {ROOT}/deploy/{site_conf};
}}
"""
    )
    return main


@asynccontextmanager
async def _proxy(stack: Stack, postgres_dsn: str, directory: Path, *, tls: bool) -> AsyncIterator[Proxied]:
    assert HAS_NGINX, "no nginx (apt-get install nginx; .ci/run does)"
    stack.env["LOCSTREAM_DATABASE_URL"] = postgres_dsn
    stack.env["LOCSTREAM_EDGE_PING_INTERVAL_SECONDS"] = str(PING_SECONDS)
    projector, *others = await asyncio.gather(
        *(stack.start(name) for name in ("projector", "producers", "producers", "ws-edge", "ws-edge", "geofencer"))
    )
    producers, edges, geofencer = others[0:2], others[2:4], others[4]
    upstreams = {
        "producers": [s.port for s in producers],
        "projector": [projector.port],
        "edges": [s.port for s in edges],
    }
    files = generate(directory / "certificates", hosts=(PUBLIC, "127.0.0.1")) if tls else None
    site = Site(free_port(), upstreams, free_port() if tls else None, files)
    main = nginx_config(directory / "nginx", "nginx-tls.conf" if tls else "nginx.conf", site)
    check = await asyncio.to_thread(
        subprocess.run, [NGINX, "-t", "-c", str(main)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stderr
    nginx = subprocess.Popen([NGINX, "-c", str(main)], stdin=subprocess.DEVNULL)
    try:

        async def answers() -> bool:
            try:
                async with httpx.AsyncClient() as client:
                    await client.get(f"http://127.0.0.1:{site.listen}/map")
            except httpx.TransportError:
                return False
            return True

        await eventually(answers, timeout=15, what="nginx to listen")
        yield Proxied(stack, site.listen, producers, projector, edges, geofencer, site.tls_port, files)
    finally:
        nginx.send_signal(signal.SIGQUIT)  # graceful: lets workers close the WebSockets
        try:
            nginx.wait(timeout=10)
        except subprocess.TimeoutExpired:
            nginx.kill()
            nginx.wait()


@pytest.fixture
async def proxied(stack: Stack, postgres_dsn: str, tmp_path: Path) -> AsyncIterator[Proxied]:
    """deploy/nginx.conf: plain HTTP."""
    async with _proxy(stack, postgres_dsn, tmp_path, tls=False) as running:
        yield running


@pytest.fixture
async def proxied_tls(stack: Stack, postgres_dsn: str, tmp_path: Path) -> AsyncIterator[Proxied]:
    """deploy/nginx-tls.conf: HTTPS with a certificate for fleet.example.test that the test's CA signed."""
    async with _proxy(stack, postgres_dsn, tmp_path, tls=True) as running:
        yield running


async def _post_fix(proxied: Proxied, technician: str, latitude: float, longitude: float) -> None:
    token = proxied.stack.token(TENANT, Role.DEVICE_GATEWAY)
    async with proxied.client() as client:
        answer = await client.post(
            f"{API}/technicians/{technician}/location",
            json={"latitude": latitude, "longitude": longitude},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert answer.status_code == 202, answer.text


async def _map_goes_live_and_survives_each_edge_killed(proxied: Proxied, *flags: str) -> None:
    await _post_fix(proxied, "tech-ada", 6.5244, 3.3792)
    async with chromium(f"--host-resolver-rules=MAP {PUBLIC} 127.0.0.1", *flags) as browser:
        page = await browser.new_page(viewport={"width": 1000, "height": 700})
        token = proxied.stack.token(TENANT, Role.DISPATCHER, ttl=3600)
        await sign_in(page, f"{proxied.public}/map?reconnect_ms=200&max_reconnect_ms=800", token)
        await page.wait_for_function(fix_at("tech-ada", 6.5244, 3.3792), timeout=15_000)
        # Through the proxy, to either ingest process; steps of tens of metres (a fix's received time is its device
        # time here, a second or less apart: a longer step would be a jump, which no map shows).
        await _post_fix(proxied, "tech-ada", 6.5246, 3.3794)
        await page.wait_for_function(fix_at("tech-ada", 6.5246, 3.3794), timeout=10_000)

        # Kill each edge in turn behind the proxy: the page resumes on the other, and a fix posted meanwhile arrives.
        for number in range(2):
            proxied.edges[number].kill9()
            latitude = 6.5248 + number / 10_000
            await _post_fix(proxied, "tech-ada", latitude, 3.3796)
            await page.wait_for_function(fix_at("tech-ada", latitude, 3.3796), timeout=20_000)
            proxied.edges[number] = await proxied.stack.start("ws-edge", port=proxied.edges[number].port)
        await shot(page, f"proxy-map-live-{urlsplit(proxied.public).scheme}")
        assert await page.text_content("#badge") == "Live"


async def test_the_map_on_a_public_name_goes_live_sees_a_fix_and_survives_an_edge_killed(proxied: Proxied) -> None:
    await _map_goes_live_and_survives_each_edge_killed(proxied)


def _spki_pin(tls: TlsFiles) -> str:
    """Chromium's --ignore-certificate-errors-spki-list value for the site's certificate (that one key alone)."""
    certificate = x509.load_pem_x509_certificates(tls.broker.read_bytes())[0]
    spki = certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


async def test_over_tls_the_map_goes_live_on_wss_and_survives_an_edge_killed(proxied_tls: Proxied) -> None:
    assert proxied_tls.tls is not None and proxied_tls.public.startswith("https://")
    await _map_goes_live_and_survives_each_edge_killed(
        proxied_tls, f"--ignore-certificate-errors-spki-list={_spki_pin(proxied_tls.tls)}"
    )


async def test_over_tls_answers_carry_hsts_set_up_urls_say_https_and_plain_http_redirects(proxied_tls: Proxied) -> None:
    admin = {"Authorization": f"Bearer {proxied_tls.stack.token(TENANT, Role.ADMIN)}"}
    async with proxied_tls.client() as client:
        page = await client.get("/map")
        assert page.status_code == 200 and page.headers["strict-transport-security"] == "max-age=31536000"
        registered = await client.post(f"{API}/devices", json={"technician_id": "tech-ada"}, headers=admin)
        assert registered.status_code == 201, registered.text
        assert registered.headers["strict-transport-security"] == "max-age=31536000"
        setup = registered.json()["setup"]
        urls = [url for app in setup.values() for key, url in app.items() if "url" in key or "endpoint" in key]
        assert urls and all(url.startswith(f"{proxied_tls.public}/api/v1/ingest/") for url in urls), urls

        # Host header games: another name over the same listener is refused, never proxied.
        for host in ("evil.example", f"evil.example:{proxied_tls.tls_port}", "127.0.0.1"):
            other = await client.get("/map", headers={"Host": host})
            assert other.status_code == 421, host
        # A WebSocket upgrade from a foreign page is refused by the edge (its Origin is not the site's).
        upgrade = {
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        }
        foreign = await client.get(f"{WS_PATH}", headers={**upgrade, "Origin": "https://evil.example"})
        assert foreign.status_code == 403

    async with httpx.AsyncClient(timeout=15) as plain:
        answer = await plain.get(
            f"http://127.0.0.1:{proxied_tls.port}/map?x=1", headers={"Host": f"evil.example:{proxied_tls.port}"}
        )
    assert answer.status_code == 301
    assert answer.headers["location"] == f"{proxied_tls.public}/map?x=1"  # its own name, not the client's


async def test_device_set_up_urls_name_the_public_host_and_operators_endpoints_stay_inside(proxied: Proxied) -> None:
    admin = {"Authorization": f"Bearer {proxied.stack.token(TENANT, Role.ADMIN)}"}
    async with proxied.client() as client:
        registered = await client.post(f"{API}/devices", json={"technician_id": "tech-ada"}, headers=admin)
        assert registered.status_code == 201, registered.text
        setup = registered.json()["setup"]
        urls = [url for app in setup.values() for key, url in app.items() if "url" in key or "endpoint" in key]
        assert urls and all(url.startswith(f"{proxied.public}/api/v1/ingest/") for url in urls), urls

        # The reports are the projector's (the ingest processes would answer 404).
        window = {"start_time": "2026-12-01T00:00:00Z", "end_time": "2026-12-02T00:00:00Z"}
        stops = await client.get(f"{API}/reports/stops", params=window, headers=admin)
        assert stops.status_code == 200 and stops.json()["stops"] == [], stops.text

        for path in ("/metrics", "/readyz", "/map/../metrics", "/%2e%2e/metrics", "/map/%2E%2E/readyz", "//metrics"):
            answer = await client.get(path, headers=admin)
            assert answer.status_code in (400, 404), (path, answer.status_code)
            assert "python_gc" not in answer.text and "brokers" not in answer.text, path
    # Each service's own port still answers them (the projector is ready once its group has given it partitions).
    for service in (*proxied.producers, proxied.projector, *proxied.edges, proxied.geofencer):
        async with httpx.AsyncClient() as own:

            async def ready(own: httpx.AsyncClient = own, service: Service = service) -> bool:
                return (await own.get(f"{service.url}/readyz")).status_code == 200

            await eventually(ready, timeout=30, what=f"{service.name}'s /readyz on its own port")
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


async def test_an_idle_map_is_not_cut_by_the_proxy_for_three_ping_intervals(proxied: Proxied) -> None:
    token = proxied.stack.token(TENANT, Role.DISPATCHER)
    async with websockets.connect(
        f"ws://{PUBLIC}:{proxied.port}{WS_PATH}?token={token}", host="127.0.0.1", port=proxied.port
    ) as ws:
        assert (await recv_json(ws))["type"] == "connected"
        assert (await recv_json(ws))["type"] == "initial_state"
        with pytest.raises(TimeoutError):  # idle: nothing to say but the edge's pings, which the client answers
            await asyncio.wait_for(ws.recv(), timeout=3 * PING_SECONDS + 1)
        await _post_fix(proxied, "tech-idle", 1.5, 2.5)
        update = await recv_json(ws, timeout=15)
        assert update["type"] in ("location_update", "location_batch")


async def test_a_200000_fix_export_streams_through_the_proxy(proxied: Proxied) -> None:
    kafka = proxied.stack.kafka
    started = datetime.now(UTC)
    events: list[Event] = [
        location(TENANT, f"tech-{i % 50}", started + timedelta(milliseconds=i), 1.0 + i * 1e-6, 2.0)
        for i in range(EXPORTED)
    ]
    stamps = await append(kafka, events)
    await clock_past(max(stamps))
    window = {
        "from": datetime.fromtimestamp(min(stamps) / 1000, UTC).isoformat(),
        "to": datetime.fromtimestamp((max(stamps) + 1) / 1000, UTC).isoformat(),
    }
    token = proxied.stack.token(TENANT, Role.ANALYST)
    lines = 0
    async with proxied.client() as client:
        began = time.perf_counter()
        first: float | None = None
        async with client.stream(
            "GET", f"{API}/history/export", params=window, headers={"Authorization": f"Bearer {token}"}, timeout=120
        ) as answer:
            assert answer.status_code == 200
            async for chunk in answer.aiter_bytes():
                first = first or time.perf_counter() - began
                lines += chunk.count(b"\n")
        took = time.perf_counter() - began
    assert lines == EXPORTED
    # Streamed: not held until the end was read (held, the first byte would come at the end: first ~ took). Half, not
    # a quarter: the parallel pass on 2 cores once took 1.41 s of 5.5 s to the first byte.
    assert first is not None and first < took / 2, (first, took)


async def test_a_slowloris_and_oversized_headers_are_cut_by_the_proxy(proxied: Proxied) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxied.port)
    writer.write(f"GET /map HTTP/1.1\r\nHost: {PUBLIC}\r\n".encode())
    began = time.monotonic()

    async def trickle() -> None:
        for i in range(100):  # a header line every half second, never the blank line that ends the head
            writer.write(f"X-Slow-{i}: a\r\n".encode())
            await writer.drain()
            await asyncio.sleep(0.5)

    trickling = asyncio.create_task(trickle())
    try:
        answer = await asyncio.wait_for(reader.read(), timeout=30)  # until nginx closes the connection
    finally:
        trickling.cancel()
        writer.close()
    waited = time.monotonic() - began
    assert waited < 20 and (answer == b"" or answer.startswith(b"HTTP/1.1 408")), (waited, answer[:80])
    for service in proxied.producers:  # nginx never opened an upstream connection for it
        assert "X-Slow" not in service.log()

    async with proxied.client() as client:
        huge = await client.get("/map", headers={"X-Huge": "a" * 20_000})
    assert huge.status_code in (400, 431) and "<center>nginx" in huge.text


async def test_the_deploy_guides_device_registration_runs_against_the_tls_proxy(
    proxied_tls: Proxied, tmp_path: Path
) -> None:
    """docs/deploy.md step 7, its curl as written, with the hostname swapped for the test's."""
    guide = (ROOT / "docs/deploy.md").read_text()
    step = guide[guide.index("**Register a device.**") :]
    block = re.search(r"```sh\n(.*?)```", step, flags=re.S)
    assert block is not None and "curl" in block.group(1)
    assert proxied_tls.tls is not None and proxied_tls.tls_port is not None
    script = textwrap.dedent(block.group(1)).replace("https://fleet.example.com", proxied_tls.public)
    (tmp_path / "curl").mkdir()
    (tmp_path / "curl/.curlrc").write_text(  # curl as on a machine whose DNS and trust store know the site
        f"resolve = {PUBLIC}:{proxied_tls.tls_port}:127.0.0.1\ncacert = {proxied_tls.tls.ca}\n"
    )
    env = {
        "PATH": os.environ["PATH"],
        "CURL_HOME": str(tmp_path / "curl"),
        "ADMIN_TOKEN": proxied_tls.stack.token(TENANT, Role.ADMIN),
    }
    ran = await asyncio.to_thread(
        subprocess.run, ["bash", "-euo", "pipefail", "-c", script], env=env, capture_output=True, text=True, check=False
    )
    assert ran.returncode == 0, ran.stderr
    registered = json.loads(ran.stdout)
    assert registered["technician_id"] == "tech-ada" and registered["key"]
    endpoint = registered["setup"]["overland"]["receiver_endpoint"]
    assert endpoint == f"{proxied_tls.public}/api/v1/ingest/overland"


# The seed document's "Test WebSocket Connection" snippet for the browser console, as written there but for the
# host (localhost:8000 there) and the token's source (localStorage there), and with its messages kept.
SEED_SNIPPET = """
async ([host, token]) => {
  window.seedMessages = [];
  const ws = new WebSocket(`ws://${host}/api/v1/field-service/ws/technician-locations?token=${token}`);
  ws.onopen = () => console.log("Connected!");
  ws.onmessage = (event) => window.seedMessages.push(JSON.parse(event.data));
  ws.onerror = (error) => console.error("Error:", error);
  ws.onclose = () => console.log("Disconnected");
  await new Promise((resolve) => ws.addEventListener("open", resolve));
  ws.send("ping");
}
"""
# Its "Update Technician Location" curl, with the host and token of the test.
SEED_CURL = """curl -X POST http://$HOST/api/v1/field-service/technicians/{TECH_ID}/location \\
  -H "Content-Type: application/json" \\
  -H "Authorization: Bearer $TOKEN" \\
  -d '{
    "latitude": 6.5244,
    "longitude": 3.3792,
    "activity": "on_site"
  }'
"""


async def test_the_seeds_console_snippet_and_curl_work_through_the_proxy(proxied: Proxied, tmp_path: Path) -> None:
    host = f"{PUBLIC}:{proxied.port}"
    async with chromium(f"--host-resolver-rules=MAP {PUBLIC} 127.0.0.1") as browser:
        page = await browser.new_page()
        await page.goto(f"{proxied.public}/map")  # the console of a page of the site
        await page.evaluate(SEED_SNIPPET, [host, proxied.stack.token(TENANT, Role.DISPATCHER)])
        await page.wait_for_function("window.seedMessages.some((m) => m.type === 'pong')", timeout=10_000)
        types = await page.evaluate("window.seedMessages.map((m) => m.type)")
        assert types[:2] == ["connected", "initial_state"], types

        (tmp_path / "curl").mkdir()
        (tmp_path / "curl/.curlrc").write_text(f"resolve = {host}:127.0.0.1\n")
        env = {
            "PATH": os.environ["PATH"],
            "CURL_HOME": str(tmp_path / "curl"),
            "HOST": host,
            "TOKEN": proxied.stack.token(TENANT, Role.DEVICE_GATEWAY),
        }
        script = SEED_CURL.replace("{TECH_ID}", "tech-seed")
        ran = await asyncio.to_thread(
            subprocess.run, ["bash", "-c", script], env=env, capture_output=True, text=True, check=False
        )
        assert ran.returncode == 0 and json.loads(ran.stdout)["status"] == "accepted", (ran.stdout, ran.stderr)
        arrived = (
            "window.seedMessages.some((m) => (m.type === 'location_update' && m.data.technician_id === 'tech-seed')"
            " || (m.type === 'location_batch' && m.data.some((d) => d.technician_id === 'tech-seed')))"
        )
        await page.wait_for_function(arrived, timeout=10_000)
