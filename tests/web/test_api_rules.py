"""`GET /api/v1/rules` and the rule tools' honesty: the live hash and when it went live, the
latest refused change with its `path:line` errors (the old set stays live), `hub rules check`
running the rule tests, a TOML error reported at its own line only, and `rules explain` naming
its hash and warning when the hub routes with another."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from hub.app import Hub
from hub.auth import create_token
from hub.config import Settings
from hub.routing import cli
from hub.staff import add_staff
from hub.web.app import create_app

SHIPPED = Path(__file__).resolve().parents[2] / "routing_rules"


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    shutil.copytree(SHIPPED, folder)
    return folder


async def test_the_live_set_and_the_latest_refusal(settings_data: dict[str, dict[str, object]],
                                                   rules: Path) -> None:
    settings_data["routing"] = {"rules_dir": str(rules), "watch": False}
    hub = Hub(Settings.model_validate(settings_data))
    await hub.prepare()
    try:
        tokens = {}
        async with hub.db.transaction() as session:
            for role in ("supervisor", "agent"):
                staff = await add_staff(session, f"{role}@city.example", name=role, role=role,
                                        queues=["roads"] if role == "agent" else ())
                tokens[role] = await create_token(session, staff)
        headers = {"Authorization": f"Bearer {tokens['supervisor']}"}
        async with TestClient(TestServer(create_app(hub))) as client:
            first = await (await client.get("/api/v1/rules", headers=headers)).json()
            assert first["version"] == hub.rules.version and first["loaded_at"]  # type: ignore[union-attr]
            assert first["errors"] == [] and first["last_refused"] is None
            route = rules / "20-route.toml"
            route.write_text(route.read_text().replace('then.queue = "roads"', 'then.queue = "roads'))
            assert hub.rules is not None and not await hub.rules.reload_async()
            after = await (await client.get("/api/v1/rules", headers=headers)).json()
            agent = await client.get("/api/v1/rules",
                                     headers={"Authorization": f"Bearer {tokens['agent']}"})
        assert after["version"] == first["version"]  # the old set stays live
        (error,) = after["last_refused"]["errors"]
        assert error.startswith(f"{rules}/20-route.toml:") and "not valid TOML" in error
        assert after["errors"] == [error] and agent.status == 403
    finally:
        await hub.stop()


def test_check_runs_the_rule_tests(rules: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.check(rules) == 0
    assert "rule tests passed" in capsys.readouterr().out
    examples = rules / "tests" / "examples.toml"
    examples.write_text(examples.read_text().replace('expect = { queue = "permits" }',
                                                     'expect = { queue = "noise" }'))
    assert cli.check(rules) == 1
    err = capsys.readouterr().err
    assert "rule tests failed: the hub refuses this set" in err


def test_a_toml_error_is_reported_at_its_line_alone(rules: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    route = rules / "20-route.toml"
    lines = route.read_text().splitlines()
    broken = next(i for i, line in enumerate(lines) if line.startswith('then.queue = "roads"'))
    lines[broken] = 'then.queue = "roads'
    route.write_text("\n".join(lines) + "\n")
    assert cli.check(rules) == 1
    (only,) = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert only.startswith(f"{rules}/20-route.toml:{broken + 1}: not valid TOML")


def test_explain_names_its_hash_and_warns_when_the_hub_differs(
        rules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    eml = tmp_path / "m.eml"
    eml.write_bytes(b"From: a@example.org\r\nSubject: Pothole\r\n\r\nA pothole on Elm St.\r\n")
    ruleset = cli._load(rules)
    assert ruleset is not None
    assert cli.explain(eml, rules_dir=rules, live_version=ruleset.version) == 0
    err = capsys.readouterr().err
    assert f"explained with rules {ruleset.version}" in err and "warning" not in err
    assert cli.explain(eml, rules_dir=rules, live_version="0123456789abcdef") == 0
    assert "warning: the hub is routing with rules 0123456789abcdef" in capsys.readouterr().err
