"""Fixtures for the staff workspace: a hub with an email and an SMS channel (the email one can
hold its sends, see desk.GatedAdapter), and the desk of tests/web/staff/desk.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hub.app import Hub
from hub.config import Settings
from tests.web.staff.desk import Desk, adapters, build_desk


@pytest.fixture
async def hub(settings: Settings) -> AsyncIterator[Hub]:
    instance = Hub(settings, adapters=adapters())
    await instance.prepare()
    yield instance
    await instance.stop()


@pytest.fixture
async def desk(hub: Hub) -> Desk:
    return await build_desk(hub)
