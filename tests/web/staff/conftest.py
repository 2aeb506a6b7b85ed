"""Fixtures for the staff workspace: a hub with an email and an SMS channel (the email one can
hold its sends, see desk.GatedAdapter), the desk of tests/web/staff/desk.py, and a browser page
on the test's server (for the slow_e2e tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
from aiohttp.test_utils import TestClient

from hub.app import Hub
from hub.config import Settings
from tests.web.staff.desk import Desk, adapters, build_desk

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page


@pytest.fixture
async def hub(settings: Settings) -> AsyncIterator[Hub]:
    instance = Hub(settings, adapters=adapters())
    await instance.prepare()
    yield instance
    await instance.stop()


@pytest.fixture
async def desk(hub: Hub) -> Desk:
    return await build_desk(hub)


@pytest.fixture
async def page(browser: Browser, client: TestClient) -> AsyncIterator[Page]:
    context = await browser.new_context(base_url=str(client.make_url("/")))
    page = await context.new_page()
    page.set_default_timeout(10_000)
    yield page
    await context.close()
