"""A real headless Chromium for page tests: Debian's /usr/bin/chromium driven by Playwright's
async API on the test's own event loop (so a hub served by the same test answers it).
Playwright's own browser download is not used: scripts/lib.sh installs Debian's chromium.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.async_api import Browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@asynccontextmanager
async def chromium(extra_args: Sequence[str] = ()) -> AsyncIterator[Browser]:
    from playwright.async_api import async_playwright

    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing: run scripts/test.sh (it installs chromium)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                   args=[*CHROMIUM_ARGS, *extra_args])
        try:
            yield browser
        finally:
            await browser.close()
