"""Fixtures for the citizen pages: a hub on the shipped rule folder (its forms), with an email
and an SMS channel that record what they send, and helpers (citizen.py) to fill forms over
HTTP and to answer as staff through the API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.app import Hub
from hub.config import Settings
from tests.support.adapter import RecordingAdapter
from tests.support.shipped_rules import shipped_rules_always_open


@pytest.fixture
def settings_data(settings_data: dict[str, dict[str, object]],
                  tmp_path: Path) -> dict[str, dict[str, object]]:
    # Open around the clock: the shipped after-hours reply would make counts depend on the time.
    rules = shipped_rules_always_open(tmp_path)
    settings_data["routing"] = {"rules_dir": str(rules), "watch": False}
    return settings_data


@pytest.fixture
async def hub(settings: Settings) -> AsyncIterator[Hub]:
    instance = Hub(settings, adapters=[RecordingAdapter(name="email"),
                                       RecordingAdapter(name="sms")])
    await instance.prepare()
    yield instance
    await instance.stop()
