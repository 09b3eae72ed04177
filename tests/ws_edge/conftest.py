"""Every WebSocket client a test opened with ``tests.support.maps`` is closed after it, so none is left for the
garbage collector to find during another test; the map page's tests get a Chromium."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser

from tests.support.browser import chromium
from tests.support.maps import close_all


@pytest.fixture(autouse=True)
async def _close_map_clients() -> AsyncIterator[None]:
    yield
    await close_all()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """A headless Chromium (``tests/support/browser.py``); the map tests fail, not skip, without one."""
    async with chromium() as launched:
        yield launched
