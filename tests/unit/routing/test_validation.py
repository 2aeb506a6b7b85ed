"""Every kind of error an admin can make, reported as `path:line: message` at the right line."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.routing.loader import check_rules
from tests.unit.routing.conftest import write_rules

R = "[[rule]]\n"  # line 1 of every snippet below


def errors_for(rules_dir: Path, files: dict[str, str]) -> list[str]:
    write_rules(rules_dir, files)
    return [str(e) for e in check_rules(rules_dir)]


CASES = [
    (
        "unknown field",
        {"x.toml": R + 'id = "a"\nphase = "enrich"\norder = 1\ncolour = "red"\n'},
        "x.toml:5:",
        "unknown field 'colour'",
    ),
    (
        "unknown action",
        {"x.toml": R + 'id = "a"\nphase = "enrich"\norder = 1\nthen.queu = "roads"\n'},
        "x.toml:5:",
        "unknown field 'then.queu'",
    ),
    (
        "unknown condition field",
        {
            "x.toml": R
            + 'id = "a"\nphase = "enrich"\norder = 1\nwhen.body.contains = "x"\nthen.tags.add = ["t"]\n'
        },
        "x.toml:5:",
        "unknown condition field 'body'",
    ),
    (
        "unknown operator",
        {
            "x.toml": R
            + 'id = "a"\nphase = "enrich"\norder = 1\nwhen.text.includes = "x"\nthen.tags.add = ["t"]\n'
        },
        "x.toml:5:",
        "unknown operator 'includes'",
    ),
    (
        "bad value",
        {"x.toml": R + 'id = "a"\nphase = "enrich"\norder = 1\nthen.priority = "asap"\n'},
        "x.toml:5:",
        "then.priority",
    ),
    (
        "unknown queue",
        {
            "x.toml": R
            + 'id = "a"\nphase = "route"\norder = 1\nwhen.text.contains = "x"\nthen.queue = "parks"\n'
        },
        "x.toml:6:",
        "unknown queue 'parks'",
    ),
    (
        "unknown queue in a condition",
        {
            "x.toml": R
            + 'id = "a"\nphase = "enrich"\norder = 1\nwhen.queue = "parks"\nthen.tags.add = ["t"]\n'
        },
        "x.toml:5:",
        "unknown queue 'parks'",
    ),
    (
        "unknown list",
        {
            "x.toml": R
            + 'id = "a"\nphase = "enrich"\norder = 1\nwhen.sender.in_list = "vips"\nthen.tags.add = ["t"]\n'
        },
        "x.toml:5:",
        "unknown list 'vips'",
    ),
    (
        "unknown calendar",
        {
            "x.toml": R
            + 'id = "a"\nphase = "enrich"\norder = 1\nwhen.calendar.outside = "opening"\nthen.tags.add = ["t"]\n'  # noqa: E501
        },
        "x.toml:5:",
        "unknown calendar 'opening'",
    ),
    (
        "unknown template",
        {
            "x.toml": R
            + 'id = "a"\nphase = "enrich"\norder = 1\nthen.auto_reply.template = "bye"\nthen.auto_reply.once_per = "1d"\n'  # noqa: E501
        },
        "x.toml:5:",
        "unknown template 'bye'",
    ),
    (
        "auto-reply without once_per",
        {
            "x.toml": R
            + 'id = "a"\nphase = "enrich"\norder = 1\nthen.auto_reply = { template = "hello" }\n'
        },
        "x.toml:5:",
        "needs `once_per`",
    ),
    (
        "bad regex in a list, on its own line",
        {
            "x.toml": R
            + 'id = "a"\nphase = "enrich"\norder = 1\nwhen.text.matches_any = [\n  \'ok\',\n  \'(unclosed\',\n]\nthen.tags.add = ["t"]\n'  # noqa: E501
        },
        "x.toml:7:",
        "does not compile",
    ),
    (
        "duplicate id",
        {
            "x.toml": R
            + 'id = "a"\nphase = "enrich"\norder = 1\nthen.tags.add = ["t"]\n\n'
            + R
            + 'id = "a"\nphase = "enrich"\norder = 2\nthen.tags.add = ["t"]\n'
        },
        "x.toml:8:",
        "duplicate rule id 'a' (first at",
    ),
    (
        "duplicate order",
        {
            "x.toml": R
            + 'id = "a"\nphase = "enrich"\norder = 1\nthen.tags.add = ["t"]\n\n'
            + R
            + 'id = "b"\nphase = "enrich"\norder = 1\nthen.tags.add = ["t"]\n'
        },
        "x.toml:8:",
        "duplicate order 1",
    ),
    (
        "second default",
        {
            "x.toml": "\n"
            + R
            + 'id = "other-default"\nphase = "route"\ndefault = true\nthen.queue = "roads"\n'
        },
        "x.toml:3:",
        "a second default rule",
    ),
    (
        "shadowed by an earlier catch-all",
        {
            "x.toml": R
            + 'id = "all"\nphase = "route"\norder = 1\nthen.queue = "roads"\n\n'
            + R
            + 'id = "later"\nphase = "route"\norder = 2\nwhen.text.contains = "x"\nthen.queue = "waste"\n'
        },
        "x.toml:8:",
        "'later' is never reached: 'all'",
    ),
    (
        "bad duration",
        {
            "x.toml": R
            + 'id = "a"\nphase = "enrich"\norder = 1\nthen.auto_reply = { template = "hello", once_per = "soon" }\n'  # noqa: E501
        },
        "x.toml:5:",
        "bad duration",
    ),
    (
        "stop outside intake",
        {"x.toml": R + 'id = "a"\nphase = "enrich"\norder = 1\nthen.stop = true\n'},
        "x.toml:5:",
        "only allowed in the intake phase",
    ),
    (
        "escalate in business days",
        {
            "x.toml": R
            + 'id = "a"\nphase = "timers"\norder = 1\nthen.escalate = [{ after = "2d" }]\n'
        },
        "x.toml:5:",
        "business time",
    ),
    ("not TOML", {"x.toml": R + 'id = "a\n'}, "x.toml:2:", "not valid TOML"),
    (
        "unknown language",
        {
            "x.toml": R
            + 'id = "a"\nphase = "enrich"\norder = 1\nwhen.language = "xx"\nthen.tags.add = ["t"]\n'
        },
        "x.toml:5:",
        "unknown language code 'xx'",
    ),
    (
        "bad list entry",
        {"lists/phones.txt": "# type: phone\n+1 212 555 0100\nnot a number\n"},
        "lists/phones.txt:3:",
        "not a valid phone number",
    ),
    (
        "template syntax",
        {"templates/en/bad.txt": "Hello\n{{ reference \n"},
        "templates/en/bad.txt:2:",
        "",
    ),
    (
        "template unknown variable",
        {"templates/en/bad.txt": "Subject: x\nHello {{ nmae }}\n"},
        "templates/en/bad.txt:2:",
        "unknown template variable(s) nmae",
    ),
    (
        "calendar hours",
        {"calendars/c.toml": 'timezone = "UTC"\n[hours]\nmon = ["9-5"]\n'},
        "calendars/c.toml:3:",
        "bad opening hours",
    ),
    (
        "queue unknown calendar",
        {
            "queues.toml": '[[queue]]\nname = "general"\n\n[[queue]]\nname = "roads"\ncalendar = "nope"\n'
        },
        "queues.toml:6:",
        "unknown calendar 'nope'",
    ),
    (
        "queue assign_to",
        {
            "queues.toml": '[[queue]]\nname = "general"\n\n[[queue]]\nname = "roads"\n'
            'assign_to = "present"\n'
        },
        "queues.toml:6:",
        "online",
    ),
    (
        "unknown setting",
        {"settings.toml": 'timezone = "UTC"\nmax_replies = 3\n'},
        "settings.toml:2:",
        "unknown field 'max_replies'",
    ),
]


@pytest.mark.parametrize(("name", "files", "where", "text"), CASES, ids=[c[0] for c in CASES])
def test_error_reported_at_file_and_line(
    rules_dir: Path, name: str, files: dict[str, str], where: str, text: str
) -> None:
    errors = errors_for(rules_dir, files)
    expected_prefix = f"{rules_dir.as_posix()}/{where}"
    assert any(e.startswith(expected_prefix) and text in e for e in errors), (
        f"expected {expected_prefix} ... {text!r} in:\n" + "\n".join(errors)
    )


def test_missing_default(rules_dir: Path) -> None:
    errors = errors_for(
        rules_dir,
        {"00-default.toml": R + 'id = "a"\nphase = "enrich"\norder = 1\nthen.tags.add = ["t"]\n'},
    )
    assert any("00-default.toml:1: no default route rule" in e for e in errors), errors


def test_errors_are_lines_never_tracebacks(rules_dir: Path) -> None:
    errors = errors_for(rules_dir, {"x.toml": "rule = 3\n"})
    assert errors and all("Traceback" not in e and e.count(":") >= 2 for e in errors)


def test_good_folder_has_no_errors(rules_dir: Path) -> None:
    assert errors_for(rules_dir, {}) == []
