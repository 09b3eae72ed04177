"""Every WebSocket client a test opened with ``tests.support.maps`` is closed after it, so none is left for the
garbage collector to find during another test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.maps import close_all


@pytest.fixture(autouse=True)
async def _close_map_clients() -> AsyncIterator[None]:
    yield
    await close_all()
