"""Fixtures for the staff API and workspace: a live aiohttp test server on the hub, a populated
world, and a headless Chromium for the workspace's pages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
from aiohttp.test_utils import TestClient, TestServer

from hub.app import Hub
from hub.web.app import create_app
from tests.support.browser import chromium
from tests.web.world import World, build_world

if TYPE_CHECKING:
    from playwright.async_api import Browser


@pytest.fixture
async def client(hub: Hub) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(create_app(hub))) as test_client:
        yield test_client


@pytest.fixture
async def world(hub: Hub, request: pytest.FixtureRequest) -> World:
    """A module that sets WORLD_SET_ASIDE = True also gets a failed spool item and a dead
    outbox item (the others count outbox rows)."""
    return await build_world(hub, set_aside=getattr(request.module, "WORLD_SET_ASIDE", False))


@pytest.fixture
def settings_data(settings_data: dict[str, dict[str, object]],
                  request: pytest.FixtureRequest) -> dict[str, dict[str, object]]:
    """The rate-limit module runs with a tiny rate; everything else with the default."""
    if request.module.__name__.endswith("test_rate_limit"):
        settings_data["security"] = {"api_rate_per_minute": 3}
    return settings_data


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """A headless Chromium (tests/support/browser.py), one per test."""
    async with chromium() as instance:
        yield instance
