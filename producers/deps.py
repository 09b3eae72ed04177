"""FastAPI dependencies of the ingest API, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from locstream.http import Claims as Claims
from producers.publisher import EventPublisher


async def get_publisher(request: Request) -> EventPublisher:
    publisher: EventPublisher = request.app.state.publisher
    return publisher


Publisher = Annotated[EventPublisher, Depends(get_publisher)]
