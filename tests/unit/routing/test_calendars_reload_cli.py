"""Business time (weekend, holiday, closed dates), hot reload, the text scanner and the CLI."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from hub.routing import cli
from hub.routing.calendars import Calendar, parse_interval
from hub.routing.textmatch import TriggerScanner, norm, regex_triggers
from hub.routing.watch import RuleReloader
from tests.unit.routing.conftest import ctx, write_rules

NY = ZoneInfo("America/New_York")


def office(country: str | None = "US") -> Calendar:
    week = (parse_interval("09:00-12:00"), parse_interval("13:00-17:00"))
    return Calendar(
        name="office", tz=NY, hours={d: week for d in range(5)}, country=country, subdivision=None
    )


def test_business_minutes_across_a_weekend_and_a_holiday() -> None:
    cal = office()
    friday_4pm = datetime(2025, 1, 17, 16, 0, tzinfo=NY)  # Monday 20 January 2025 is MLK Day
    due = cal.add_business_minutes(friday_4pm, 120)
    # 60 min on Friday, Saturday/Sunday closed, Monday a federal holiday, 60 min on Tuesday.
    assert due == datetime(2025, 1, 21, 10, 0, tzinfo=NY)
    assert cal.business_minutes_between(friday_4pm, due) == 120


def test_business_minutes_skip_lunch_and_closed_dates() -> None:
    cal = office(country=None)
    cal.closed = frozenset({datetime(2025, 3, 5).date()})
    start = datetime(2025, 3, 4, 11, 0, tzinfo=NY)
    assert cal.add_business_minutes(start, 120) == datetime(2025, 3, 4, 14, 0, tzinfo=NY)
    assert cal.add_business_minutes(start, 60 * 7) == datetime(
        2025, 3, 6, 11, 0, tzinfo=NY
    )  # 5h Tue, Wed closed, 2h Thu


def test_start_outside_hours_counts_from_opening() -> None:
    cal = office(country=None)
    saturday = datetime(2025, 3, 8, 22, 0, tzinfo=UTC)
    assert cal.add_business_minutes(saturday, 30) == datetime(2025, 3, 10, 9, 30, tzinfo=NY)
    assert not cal.is_open(saturday) and cal.is_open(datetime(2025, 3, 10, 9, 30, tzinfo=NY))


def test_timer_due_at_in_a_decision_respects_the_holiday(tmp_path: Path) -> None:
    from hub.routing.loader import load_rules

    root = write_rules(
        tmp_path / "r",
        {
            "calendars/ny.toml": 'timezone = "America/New_York"\ncountry = "US"\n[hours]\n'
            + "".join(f'{d} = ["09:00-17:00"]\n' for d in ("mon", "tue", "wed", "thu", "fri")),
            "t.toml": '[[rule]]\nid = "sla"\nphase = "timers"\norder = 1\ncalendar = "ny"\n'
            'then.escalate = [{ after = "2h", priority = "urgent" }]\n',
        },
    )
    rs = load_rules(root)
    friday = datetime(2025, 1, 17, 16, 0, tzinfo=NY)
    (timer,) = rs.decide(ctx("hello", now=friday)).timers
    assert timer.due_at == datetime(2025, 1, 21, 10, 0, tzinfo=NY)


# ------------------------------------------------------------------ hot reload

ROADS = '[[rule]]\nid = "roads"\nphase = "route"\norder = 1\nwhen.text.contains = "pothole"\nthen.queue = "{q}"\n'  # noqa: E501


def test_reload_good_change_goes_live_bad_change_is_refused(tmp_path: Path) -> None:
    root = write_rules(tmp_path / "r", {"roads.toml": ROADS.format(q="roads")})
    reloader = RuleReloader(root)
    assert reloader.reload() and reloader.errors == []
    assert reloader.decide(ctx("pothole")).queue == "roads"
    v1 = reloader.version

    (root / "roads.toml").write_text(ROADS.format(q="waste"))
    assert reloader.reload()  # no restart: the same object now routes with the new rules
    assert reloader.decide(ctx("pothole")).queue == "waste" and reloader.version != v1

    (root / "roads.toml").write_text(ROADS.format(q="nowhere"))
    assert not reloader.reload()
    assert any("roads.toml:6: unknown queue 'nowhere'" in str(e) for e in reloader.errors)
    assert reloader.decide(ctx("pothole")).queue == "waste"  # the old rules still route
    assert reloader.status()["errors"]


def test_a_version_tested_elsewhere_is_not_tested_again_and_any_other_is(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `hub serve` ran the rules' tests; its work process loads the same files without them.
    root = write_rules(tmp_path / "r", {"roads.toml": ROADS.format(q="roads")})
    served = RuleReloader(root)
    assert served.reload()
    ran: list[str] = []
    monkeypatch.setattr("hub.routing.watch.run_tests",
                        lambda ruleset: (ran.append(ruleset.version), (0, []))[1])
    work = RuleReloader(root, tested=served.version)
    assert work.reload() and work.version == served.version and ran == []
    (root / "roads.toml").write_text(ROADS.format(q="waste"))  # changed since: tested here
    assert work.reload() and ran == [work.version] and work.version != served.version
    (root / "roads.toml").write_text(ROADS.format(q="roads"))  # back: its tests may differ now
    assert work.reload() and ran[-1] == served.version == work.version


def test_never_valid_folder_routes_to_the_default_queue(tmp_path: Path) -> None:
    root = write_rules(tmp_path / "r", {"roads.toml": ROADS.format(q="nowhere")})
    reloader = RuleReloader(root, default_queue="general")
    assert not reloader.reload()
    assert reloader.history_days == 0 and reloader.version == "default"
    assert reloader.decide(ctx("pothole")).queue == "general"
    (root / "roads.toml").write_text(ROADS.format(q="roads"))
    assert reloader.reload() and reloader.decide(ctx("pothole")).queue == "roads"


def test_reload_refused_when_rule_tests_fail(tmp_path: Path) -> None:
    test = (
        '[[test]]\nname = "pothole"\nmessage = { text = "pothole" }\nexpect = { queue = "roads" }\n'
    )
    root = write_rules(
        tmp_path / "r", {"roads.toml": ROADS.format(q="roads"), "tests/t.toml": test}
    )
    reloader = RuleReloader(root)
    assert reloader.reload()
    (root / "roads.toml").write_text(ROADS.format(q="waste"))
    assert not reloader.reload()
    assert any(
        "tests/t.toml:1: test 'pothole': expected queue 'roads', got 'waste'" in str(e)
        for e in reloader.errors
    )
    assert reloader.decide(ctx("pothole")).queue == "roads"


async def test_watcher_picks_up_changes(tmp_path: Path) -> None:
    import asyncio

    root = write_rules(tmp_path / "r", {"roads.toml": ROADS.format(q="roads")})
    reloader = RuleReloader(root)
    assert reloader.reload()
    await reloader.start()
    try:
        # No fixed wait for the watcher to be up: the change is written again until it is seen.
        for _ in range(100):
            (root / "roads.toml").write_text(ROADS.format(q="waste"))
            if reloader.decide(ctx("pothole")).queue == "waste":
                break
            await asyncio.sleep(0.1)
        assert reloader.decide(ctx("pothole")).queue == "waste"
    finally:
        await reloader.stop()


# ------------------------------------------------------------------ text scanner


def test_scanner_finds_exactly_the_present_keywords_overlaps_included() -> None:
    rnd = random.Random(7)
    vocab = ["".join(rnd.choice("abcde") for _ in range(rnd.randint(2, 6))) for _ in range(300)]
    scanner = TriggerScanner(vocab)
    for _ in range(200):
        text = "".join(rnd.choice("abcde ") for _ in range(80))
        assert scanner.scan(text) == {w for w in vocab if w in text}


def test_regex_triggers_are_necessary_literals() -> None:
    assert regex_triggers(r"\bpot ?holes?\b") == {"hole"}
    assert regex_triggers(r"(graffiti|vandal(ism)?)") == {"graffiti", "vandal"}
    assert regex_triggers(r".*") is None
    assert "straße" in norm("STRASSE") or norm("Straße") == "strasse"


# ------------------------------------------------------------------ CLI


def test_cli_check_test_explain(tmp_path: Path, capsys) -> None:
    root = write_rules(tmp_path / "r", {"roads.toml": ROADS.format(q="roads")})
    assert cli.check(root) == 0
    assert cli.test(root) == 0
    msg = tmp_path / "m.json"
    msg.write_text(
        json.dumps(
            {
                "channel": "sms",
                "sender": "+12125550123",
                "text": "pothole!",
                "received_at": "2025-03-04T10:00:00+00:00",
            }
        )
    )
    capsys.readouterr()
    assert cli.explain(msg, rules_dir=root, as_json=True) == 0
    assert json.loads(capsys.readouterr().out)["queue"] == "roads"
    eml = tmp_path / "m.eml"
    eml.write_bytes(
        b"From: Jane <jane@example.org>\r\nTo: help@city.example\r\nSubject: pothole\r\n"
        b"Message-ID: <1@example.org>\r\n\r\nThere is a pothole.\r\n"
    )
    assert cli.explain(eml, rules_dir=root) == 0
    assert "MATCH route   roads" in capsys.readouterr().out
    (root / "roads.toml").write_text(ROADS.format(q="nowhere"))
    assert cli.check(root) == 1
    assert "roads.toml:6: unknown queue 'nowhere'" in capsys.readouterr().err


def test_cli_register_adds_rules_commands() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    cli.register(sub, argparse.ArgumentParser(add_help=False))
    args = parser.parse_args(["rules", "replay", "--since", "2025-01-01"])
    assert args.func is cli._cmd_replay


def test_example_rules_pass_check_and_their_tests(capsys) -> None:
    root = Path(__file__).resolve().parents[3] / "routing_rules"
    assert cli.check(root) == 0, capsys.readouterr().err
    assert cli.test(root) == 0, capsys.readouterr().err
