"""Running an ASGI app under uvicorn; logging is the entrypoint's (``locstream.logs``)."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

# Inbound WebSocket frames above this close with 1009 (uvicorn's default is 16 MiB).
WS_MAX_SIZE = 64 * 1024
# No permessage-deflate (uvicorn offers it by default and browsers take it): every frame would be compressed once per
# client, not once per tenant, and each connection would carry zlib's state (hundreds of KB), against the edge's
# budget of 10 KB per connection.
WS_PER_MESSAGE_DEFLATE = False


def serve(
    app: FastAPI, host: str, port: int, access_log: bool = True, ping: tuple[float, float] = (20.0, 20.0)
) -> None:
    """``ping``: seconds between server pings on WebSockets, and how long a pong may take before the peer is taken
    for dead and closed."""
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, ws_max_size=WS_MAX_SIZE, lifespan="on", access_log=access_log,
        ws_ping_interval=ping[0], ws_ping_timeout=ping[1], ws_per_message_deflate=WS_PER_MESSAGE_DEFLATE,
    )  # fmt: skip
    uvicorn.Server(config).run()
