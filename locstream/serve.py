"""Running an ASGI app under uvicorn; logging is the entrypoint's (``locstream.logs``)."""

from __future__ import annotations

from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

# Inbound WebSocket frames above this close with 1009 (uvicorn's default is 16 MiB).
WS_MAX_SIZE = 64 * 1024
# No permessage-deflate (uvicorn offers it by default and browsers take it): every frame would be compressed once per
# client, not once per tenant, and each connection would carry zlib's state (hundreds of KB), against the edge's
# budget of 10 KB per connection.
WS_PER_MESSAGE_DEFLATE = False
# The ASGI scope extension under which ``TransportWebSocketProtocol`` hands the app its connection.
TRANSPORT_EXTENSION = "locstream.transport"


class TransportWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's Sans-I/O WebSocket protocol (one task per connection, keepalive pings on timers: the legacy
    ``websockets`` protocol runs three more tasks per connection), which also puts itself in the scope's
    extensions so an app may write frames it encoded once for many clients straight to the transport
    (``ws_edge/wire.py``). Everything else (handshake, pings, close) stays uvicorn's."""

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:  # absent when the handshake was refused before the app was called
            scope["extensions"][TRANSPORT_EXTENSION] = {"protocol": self}


def serve(
    app: FastAPI, host: str, port: int, access_log: bool = True, ping: tuple[float, float] = (20.0, 20.0)
) -> None:
    """``ping``: seconds between server pings on WebSockets, and how long a pong may take before the peer is taken
    for dead and closed."""
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, ws_max_size=WS_MAX_SIZE, lifespan="on", access_log=access_log,
        ws=TransportWebSocketProtocol, ws_ping_interval=ping[0], ws_ping_timeout=ping[1],
        ws_per_message_deflate=WS_PER_MESSAGE_DEFLATE,
    )  # fmt: skip
    uvicorn.Server(config).run()
