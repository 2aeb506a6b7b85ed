"""The field table: a new condition field is one entry, and error messages follow the table."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hub.routing import RoutingContext
from hub.routing import compile as vocab
from hub.routing.compile import FIELDS, Bad, Built, Env, Facts, FieldSpec, compile_when, register
from hub.routing.loader import check_rules
from tests.unit.routing.conftest import ctx, fired, write_rules


def _build_mailbox(name: str, op: str, arg: Any, env: Env) -> Built:
    if not isinstance(arg, str) or "@" not in arg:
        raise Bad(f"expected an address, got {arg!r}", str(arg))
    want = arg.lower()
    if op == "equals":
        return (lambda f: (f.msg.recipient or "").lower() == want), 1, None
    return (lambda f: (f.msg.recipient or "").lower() != want), 1, None


def _form(f: Facts, name: str) -> str:
    return str(f.msg.meta.get("form", {}).get(name.removeprefix("form."), ""))


def _build_form(name: str, op: str, arg: Any, env: Env) -> Built:
    if not isinstance(arg, str):
        raise Bad("expected a string")
    if op == "contains":
        return (lambda f: arg.lower() in _form(f, name).lower()), 3, None
    return (lambda f: _form(f, name) == arg), 1, None


NEW_FIELDS = (
    FieldSpec("mailbox", ("equals", "not_equals"), _build_mailbox, lambda _n: lambda f: f.msg.recipient),
    FieldSpec("form.id", ("equals",), _build_form, lambda n: lambda f: _form(f, n)),
    FieldSpec("form.*", ("equals", "contains"), _build_form, lambda n: lambda f: _form(f, n)),
)

RULE = """\
[[rule]]
id = "permits"
phase = "enrich"
order = 1
{when}
then.tags.add = ["hit"]
"""


@pytest.fixture
def extended(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped table plus NEW_FIELDS, on a copy so other tests see the shipped one."""
    monkeypatch.setattr(vocab, "FIELDS", dict(FIELDS))
    register(*NEW_FIELDS)


def _sent(to: str, form: dict[str, str]) -> RoutingContext:
    c = ctx("x", channel="webform", sender="visitor1", recipient=to)
    return replace(c, message=replace(c.message, meta={"form": form}))


def test_new_fields_are_usable_in_rule_files(extended: None, make: Any) -> None:
    when = 'when.mailbox = "Permits@City.example"\nwhen.form.id = "permit"\nwhen.form.street.contains = "elm"'
    rs = make(RULE.format(when=when))
    yes = rs.decide(_sent("permits@city.example", {"id": "permit", "street": "12 Elm St"}))
    assert "permits" in fired(yes)
    entry = next(e for e in yes.trace if e.get("rule") == "permits")
    shown = {c["clause"]: c["value"] for c in entry["clauses"]}
    assert shown == {
        "mailbox.equals": "permits@city.example",
        "form.id.equals": "permit",
        "form.street.contains": "12 Elm St",
    }
    for to, form in [
        ("help@city.example", {"id": "permit", "street": "Elm"}),
        ("permits@city.example", {"id": "noise", "street": "Elm"}),
        ("permits@city.example", {"id": "permit", "street": "Oak"}),
    ]:
        assert "permits" not in fired(rs.decide(_sent(to, form))), (to, form)


def test_new_fields_are_validated_at_path_and_line(extended: None, rules_dir: Path) -> None:
    when = 'when.mailbox = "nobody"\nwhen.form.id.includes = "x"\nwhen.mailboxx = "a@b.c"'
    write_rules(rules_dir, {"x.toml": RULE.format(when=when)})
    errors = [str(e) for e in check_rules(rules_dir)]
    at = f"{rules_dir.as_posix()}/x.toml"
    expected = [
        f"{at}:5: expected an address, got 'nobody'",
        f"{at}:6: unknown operator 'includes' for 'form.id'; use one of: equals",
        f"{at}:7: unknown condition field 'mailboxx'; fields are: ",
    ]
    for want in expected:
        assert any(e.startswith(want) for e in errors), f"{want!r} not in:\n" + "\n".join(errors)
    # form.id and form.* are shipped fields now (hub.forms): replaced in place, mailbox is new
    assert any("recent_messages, form.id, form.*, mailbox, any, all, not" in e for e in errors)


def _errors(when: dict[str, Any]) -> list[str]:
    env = Env(
        lists={}, calendars={}, queues=set(), timezone="UTC", phone_region="US", language_codes=frozenset()
    )
    found: list[str] = []
    compile_when(when, ["when"], env, lambda _path, message, _needle: found.append(message))
    return found


@pytest.mark.parametrize("name", list(FIELDS))
def test_operator_errors_list_the_table_entry(name: str) -> None:
    bogus = {"days": 1, "bogus": 1} if FIELDS[name].compile else {"bogus": 1}
    ops = ", ".join(FIELDS[name].operators)
    assert _errors({name: bogus}) == [f"unknown operator 'bogus' for {name!r}; use one of: {ops}"]


def test_unknown_field_error_lists_every_table_entry() -> None:
    [message] = _errors({"colour": "red"})
    assert message.endswith(f"fields are: {', '.join(FIELDS)}, any, all, not")


def test_an_entry_needs_a_builder_and_a_display() -> None:
    with pytest.raises(TypeError, match="needs build and show"):
        FieldSpec("mailbox", ("equals",), _build_mailbox)
