"""Running an ASGI app under uvicorn; logging is the entrypoint's (``locstream.logs``)."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

# Inbound WebSocket frames above this close with 1009 (uvicorn's default is 16 MiB).
WS_MAX_SIZE = 64 * 1024


def serve(app: FastAPI, host: str, port: int, access_log: bool = True) -> None:
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, ws_max_size=WS_MAX_SIZE, lifespan="on", access_log=access_log
    )
    uvicorn.Server(config).run()
