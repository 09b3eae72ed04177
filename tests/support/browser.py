"""Chromium driven by Playwright for the map tests: Debian's binary (``LOCSTREAM_CHROMIUM``), the flags it needs
here (docs: ``../shared/notes/browser.md``), screenshots to ``test-artifacts/browser/``, and the map page's sign-in.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Browser, Page, async_playwright

CHROMIUM = os.environ.get("LOCSTREAM_CHROMIUM", "/usr/bin/chromium")
HAS_CHROMIUM = Path(CHROMIUM).exists()
ARTIFACTS = Path(os.environ.get("LOCSTREAM_TEST_ARTIFACTS", "test-artifacts")) / "browser"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--enable-precise-memory-info",  # performance.memory in bytes, not in coarse buckets
]


@asynccontextmanager
async def chromium(*extra_flags: str) -> AsyncIterator[Browser]:
    """``extra_flags``: e.g. ``--host-resolver-rules=MAP fleet.example.test 127.0.0.1`` (a public name on loopback)."""
    assert HAS_CHROMIUM, f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=[*FLAGS, *extra_flags])
        try:
            yield launched
        finally:
            await launched.close()


async def sign_in(page: Page, url: str, token: str) -> None:
    """Open the map at ``url`` and connect with ``token``; returns once the badge says Live."""
    await page.goto(url)
    await page.fill("#token", token)
    await page.click("#login button[type=submit]")
    await mode(page, "live")


async def mode(page: Page, mode: str, timeout: float = 20_000) -> None:
    await page.wait_for_function(f"document.getElementById('badge').dataset.mode === '{mode}'", timeout=timeout)


async def shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000
    return path


def fix_at(technician: str, lat: float, lon: float, *, drawn: bool = False) -> str:
    """JS: the technician's latest fix (or, ``drawn``, where its marker is drawn now) is at lat, lon."""
    where = "shown" if drawn else "at"
    return (
        f"(() => {{ const p = window.locstreamMap.{where}('{technician}'); if (!p) return false;"
        f" return Math.abs(p[0] - {lat}) < 1e-9 && Math.abs(p[1] - {lon}) < 1e-9; }})()"
    )
