"""A queue's `expected_response` (queues.toml): read in words or short units, and a value that
cannot be read is reported at its `path:line` like every other rule-folder error."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.routing.schema import expected_minutes
from tests.unit.routing.test_validation import errors_for

QUEUES = '[[queue]]\nname = "general"\n\n[[queue]]\nname = "roads"\nexpected_response = "{}"\n'


@pytest.mark.parametrize(("text", "minutes"), [
    ("2 days", 2880), ("1 day", 1440), ("4 hours", 240), ("90 minutes", 90), ("1 week", 10080),
    ("3d", 4320), ("30 min", 30), (" 2 Days ", 2880)])
def test_readable_values(text: str, minutes: int) -> None:
    assert expected_minutes(text) == minutes


@pytest.mark.parametrize("text", ["soon", "0 days", "2 fortnights", "-1 days", "2"])
def test_unreadable_values_are_errors_at_their_line(rules_dir: Path, text: str) -> None:
    errors = errors_for(rules_dir, {"queues.toml": QUEUES.format(text)})
    where = f"{rules_dir.as_posix()}/queues.toml:6:"
    assert any(e.startswith(where) and "expected_response" in e for e in errors), errors


def test_a_good_value_is_no_error(rules_dir: Path) -> None:
    assert errors_for(rules_dir, {"queues.toml": QUEUES.format("2 days")}) == []
