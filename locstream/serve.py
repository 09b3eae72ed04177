"""Running an ASGI app under uvicorn, with deadlines and a cap for connections that have not shown who they are;
logging is the entrypoint's (``locstream.logs``).

uvicorn has no deadline for a request head: a connection that sends part of one is held for ever (its keep-alive
timeout only starts after a response). So every service runs on subclasses of uvicorn's protocols that:

- admit each new connection to the server's ``PendingGate`` (``locstream/admission.py``) until its request head is
  complete, or, for a WebSocket, until the app has verified its token (``mark_authenticated``);
- close a connection whose head is not complete ``head_timeout_seconds`` after it opened or its request began
  (408), and a WebSocket not authenticated ``handshake_timeout_seconds`` after its upgrade request;
- hand a WebSocket upgrade request to the app's own protocol when it has one for it (``WebSocketTakeover``,
  ``app.state.websocket_takeover``): the edge's live feed (``ws_edge/session.py``) serves each connection as one
  small object with callbacks, not through ASGI, on the same host and port as every HTTP endpoint;
- hand the app the transport of any other WebSocket (``TRANSPORT_EXTENSION``) so frames encoded once for many
  clients are written straight to it (``ws_edge/wire.py``).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import sys
from typing import Any, Protocol

import httptools
import uvicorn
from fastapi import FastAPI
from starlette.types import Scope
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from locstream.admission import PendingGate, pending_cap
from locstream.http import OperationsPort
from locstream.settings import ServerSettings
from locstream.websocket_upgrade import UpgradeRequest

log = logging.getLogger(__name__)

# Inbound WebSocket frames above this close with 1009 (uvicorn's default is 16 MiB).
WS_MAX_SIZE = 64 * 1024
# No permessage-deflate (uvicorn offers it by default and browsers take it): every frame would be compressed once per
# client, not once per tenant, and each connection would carry zlib's state (hundreds of KB), against the edge's
# budget of 10 KB per connection.
WS_PER_MESSAGE_DEFLATE = False
# Over the cap of pending connections, only one pending for longer than this is shed (locstream/admission.py): a
# reconnect storm of honest clients, each through its handshake within a second, is let in.
PENDING_GRACE_SECONDS = 1.0
# The ASGI scope extension under which ``TransportWebSocketProtocol`` hands the app its connection.
TRANSPORT_EXTENSION = "locstream.transport"

_REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
_SHED = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\nretry-after: 1\r\n\r\n"


class WebSocketTakeover(Protocol):
    """An app's own protocol for some WebSocket upgrade requests (``app.state.websocket_takeover``)."""

    access_log: bool

    def take_over(self, request: UpgradeRequest, gate: PendingGate, pending_seconds: float) -> asyncio.Protocol | None:
        """The protocol that answers ``request`` and serves the connection from now on, pending in ``gate`` until
        it has verified its peer (at most ``pending_seconds``); None leaves the request to the ASGI app."""


class TransportWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's Sans-I/O WebSocket protocol (one task per connection, keepalive pings on timers: the legacy
    ``websockets`` protocol runs three more tasks per connection), which also puts itself in the scope's
    extensions so an app may write frames it encoded once for many clients straight to the transport
    (``ws_edge/wire.py``), and stays pending in the server's gate until the app says it authenticated.
    Everything else (handshake, pings, close) stays uvicorn's."""

    gate: PendingGate | None = None  # set per server by ``serve``
    limits: ServerSettings | None = None
    _auth_timer: asyncio.TimerHandle | None = None
    _pending = False

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:  # absent when the handshake was refused before the app was called
            scope["extensions"][TRANSPORT_EXTENSION] = {"protocol": self}

    def await_authentication(self) -> None:
        """The connection's upgrade request arrived (the HTTP protocol handed it over, still pending)."""
        if self.gate is None or self.limits is None:
            return
        self._pending = True
        self.gate.admit(self)
        self._auth_timer = self.loop.call_later(self.limits.handshake_timeout_seconds, self._authentication_late)

    def authenticated(self) -> None:
        """The app verified the peer's token (or the peer is gone): no longer pending."""
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None
        if self._pending and self.gate is not None:
            self._pending = False
            self.gate.release(self)

    def shed(self) -> None:
        self._pending = False
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None
        self.transport.abort()

    def _authentication_late(self) -> None:
        self._auth_timer = None
        if self._pending and self.gate is not None:
            self._pending = False
            self.gate.timed_out(self)
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.authenticated()
        super().connection_lost(exc)


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol with a deadline for each request head and the connection pending in the server's gate
    until the head is complete; an upgrade to WebSocket stays pending until the app authenticates it."""

    gate: PendingGate
    limits: ServerSettings
    takeover: WebSocketTakeover | None = None
    operations_port: int | None = None  # no takeover there: that port serves the operations endpoints alone
    _head_timer: asyncio.TimerHandle | None = None
    _pending = False
    _received = b""  # the data being fed to the parser

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._await_head()  # a keep-alive connection's next request has its own deadline

    def on_headers_complete(self) -> None:
        if not (self.parser.should_upgrade() and self._should_upgrade()):
            self._head_arrived()
        super().on_headers_complete()

    def handle_websocket_upgrade(self) -> None:
        pending = self._pending
        self._head_arrived()
        if self.takeover is not None and (self.server is None or self.server[1] != self.operations_port):
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "-"
            headers = list(self.scope["headers"])
            request = UpgradeRequest.parse(self.scope["method"], self.url, headers, client)
            taken = self.takeover.take_over(request, self.gate, self.limits.handshake_timeout_seconds)
            if taken is not None:  # from now on the connection is the app's protocol's
                self.connections.discard(self)
                self.transport.set_protocol(taken)
                taken.connection_made(self.transport)
                early = self._after_head()
                if early and not self.transport.is_closing():
                    taken.data_received(early)  # frames the client sent before it saw the 101: not lost
                return
        super().handle_websocket_upgrade()
        protocol = self.transport.get_protocol()
        if pending and isinstance(protocol, TransportWebSocketProtocol):
            protocol.await_authentication()  # pending again, now until the app has verified its token

    def data_received(self, data: bytes) -> None:
        self._received = data
        try:
            super().data_received(data)
        finally:
            self._received = b""

    def _after_head(self) -> bytes:
        """What came in the same read after an upgrade request's head. uvicorn's ``data_received`` calls
        ``handle_websocket_upgrade`` while handling httptools' ``HttpParserUpgrade``, whose argument is where the
        head ended in the data fed."""
        upgrade = sys.exc_info()[1]
        if isinstance(upgrade, httptools.HttpParserUpgrade) and upgrade.args and isinstance(upgrade.args[0], int):
            return self._received[upgrade.args[0] :]
        return b""

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_arrived()
        super().connection_lost(exc)

    def shed(self) -> None:
        self._pending = False
        self._cancel_head_timer()
        if not self.transport.is_closing():
            self.transport.write(_SHED)
            self.transport.close()

    def _await_head(self) -> None:
        if self._pending or self.transport.is_closing():
            return
        self._pending = True
        self.gate.admit(self)  # may shed another, never this one
        self._head_timer = self.loop.call_later(self.limits.head_timeout_seconds, self._head_late)

    def _head_arrived(self) -> None:
        self._cancel_head_timer()
        if self._pending:
            self._pending = False
            self.gate.release(self)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self._pending:
            self._pending = False
            self.gate.timed_out(self)
            if not self.transport.is_closing():
                self.transport.write(_REQUEST_TIMEOUT)
                self.transport.close()


def mark_authenticated(scope: Scope) -> None:
    """The app verified the token of the WebSocket of ``scope``: it is no longer pending in the server's gate."""
    extension = scope.get("extensions", {}).get(TRANSPORT_EXTENSION)
    if extension is not None:
        extension["protocol"].authenticated()


def _guarded(
    limits: ServerSettings, takeover: WebSocketTakeover | None = None, operations_port: int | None = None
) -> tuple[type[GuardedHttpProtocol], type[TransportWebSocketProtocol]]:
    """Protocol classes sharing one gate, for one server."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    descriptors = soft if soft != resource.RLIM_INFINITY else 1 << 20
    cap = pending_cap(limits.max_pending_connections, descriptors)
    limit = pending_cap(1 << 30, descriptors)  # half the free descriptors: a reconnect storm may go over the cap
    gate = PendingGate(cap, limit=limit, grace_seconds=PENDING_GRACE_SECONDS)
    log.info(
        "at most %d connections pending at once (no complete request head or token yet), %d for a moment; %d"
        " descriptors",
        cap,
        limit,
        soft,
    )
    shared = {"gate": gate, "limits": limits}
    http = type(
        "HttpProtocol", (GuardedHttpProtocol,), {**shared, "takeover": takeover, "operations_port": operations_port}
    )
    ws = type("WebSocketProtocol", (TransportWebSocketProtocol,), shared)
    return http, ws


def serve(
    app: FastAPI,
    host: str,
    port: int,
    access_log: bool = True,
    ping: tuple[float, float] = (20.0, 20.0),
    limits: ServerSettings | None = None,
    metrics_port: int | None = None,
) -> None:
    """``ping``: seconds between server pings on WebSockets, and how long a pong may take before the peer is taken
    for dead and closed. ``metrics_port``: a second listening socket of the same server, for the operations
    endpoints only (``locstream.http.OperationsPort``)."""
    limits = limits or ServerSettings()
    takeover: WebSocketTakeover | None = getattr(app.state, "websocket_takeover", None)
    if takeover is not None:
        takeover.access_log = access_log
    http, ws = _guarded(limits, takeover, metrics_port)
    config = uvicorn.Config(
        app if metrics_port is None else OperationsPort(app, metrics_port),
        host=host,
        port=port,
        log_config=None,
        ws_max_size=WS_MAX_SIZE,
        lifespan="on",
        access_log=access_log,
        http=http,
        ws=ws,
        ws_ping_interval=ping[0],
        ws_ping_timeout=ping[1],
        ws_per_message_deflate=WS_PER_MESSAGE_DEFLATE,
        timeout_keep_alive=limits.keep_alive_seconds,
        proxy_headers=True,
        forwarded_allow_ips=limits.trusted_proxies,
    )
    sockets = [config.bind_socket()]
    if metrics_port is not None:
        sockets.append(_listening_socket(host, metrics_port))
        log.info("/metrics, /healthz and /readyz on http://%s:%d (LOCSTREAM_METRICS_PORT)", host, metrics_port)
    uvicorn.Server(config).run(sockets=sockets)


def _listening_socket(host: str, port: int) -> socket.socket:
    """Bound as uvicorn binds its own (asyncio makes it listen)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock
