"""Forms as files in the rule folder: loading with `path:line` errors, reload, `when.form.*`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hub.model import InboundMessage
from hub.routing import cli
from hub.routing.errors import RuleSetInvalid
from hub.routing.loader import load_rules
from hub.routing.watch import RuleReloader
from tests.unit.routing.conftest import ctx, fired, write_rules

SHIPPED = Path(__file__).resolve().parents[3] / "routing_rules"

FORM = """\
title = { en = "Report a pothole", es = "Avisar de un bache" }
queue = "roads"
contact = "either"

[[field]]
id = "hazard"
type = "choice"
required = true
label = { en = "Dangerous?", es = "¿Peligroso?" }
choices = [
  { value = "yes", label = { en = "Yes", es = "Sí" } },
  { value = "no", label = { en = "No", es = "No" } },
]

[[field]]
id = "photo"
type = "file"
label = { en = "Photo", es = "Foto" }
"""

HAZARD_RULE = """\
[[rule]]
id = "form.hazard"
phase = "route"
order = 10
when.form.id = "pothole"
when.form.hazard = "yes"
then.queue = "roads"
then.priority = "urgent"
"""


def errors_of(root: Path) -> list[str]:
    with pytest.raises(RuleSetInvalid) as exc:
        load_rules(root)
    return [str(e) for e in exc.value.errors]


def test_every_shipped_form_is_valid_and_in_both_languages() -> None:
    ruleset = load_rules(SHIPPED)
    assert set(ruleset.forms) == {"pothole", "missed_collection", "noise", "general_question",
                                  "permit_enquiry"}
    pothole = ruleset.forms["pothole"]
    assert pothole.location_field() is not None
    assert any(f.type == "file" for f in pothole.field)
    for form in ruleset.forms.values():
        assert form.queue in ruleset.queues
        assert {"en", "es"} <= set(form.title)
        assert all({"en", "es"} <= set(f.label) for f in form.field)


def test_form_errors_are_path_line(tmp_path: Path) -> None:
    bad = FORM.replace('queue = "roads"', 'queue = "nowhere"').replace(
        'type = "file"', 'type = "file"\ncontent_types = ["text/html"]')
    typo = FORM.replace('label = { en = "Photo", es = "Foto" }',
                        'label = { en = "Photo", es = "Foto" }\ncolour = "red"')
    root = write_rules(tmp_path / "r", {"forms/pothole.toml": bad, "forms/noise.toml": typo,
                                        "forms/Bad Name.toml": FORM,
                                        "forms/broken.toml": "title = \n"})
    found = errors_of(root)
    where = f"{root}/forms/pothole.toml"
    assert f"{where}:2: unknown queue 'nowhere'; declare it in queues.toml" in found
    assert any(e.startswith(f"{where}:18: ") and "text/html" in e for e in found), found
    assert f"{root}/forms/noise.toml:19: unknown field 'field.colour'" in found
    assert any(e.startswith(f"{root}/forms/Bad Name.toml:1: form id") for e in found)
    assert any(e.startswith(f"{root}/forms/broken.toml:1: not valid TOML") for e in found)


def test_duplicate_fields_reserved_ids_and_missing_language(tmp_path: Path) -> None:
    form = FORM.replace('id = "photo"', 'id = "hazard"').replace(
        'label = { en = "Dangerous?", es = "¿Peligroso?" }', 'label = { en = "Dangerous?" }')
    reserved = FORM + '\n[[field]]\nid = "email"\ntype = "email"\nlabel = { en = "E", es = "E" }\n'
    root = write_rules(tmp_path / "r", {"forms/pothole.toml": form, "forms/noise.toml": reserved})
    found = errors_of(root)
    where = f"{root}/forms/pothole.toml"
    assert f"{where}:16: duplicate field id 'hazard'" in found
    assert f"{where}:9: the label of 'hazard' needs a text in es (the rule set's languages)" in found
    assert any(e.startswith(f"{root}/forms/noise.toml:20: ") and "'email' is reserved" in e
               for e in found), found


def test_bad_form_on_reload_keeps_the_old_set_live(tmp_path: Path) -> None:
    root = write_rules(tmp_path / "r", {"forms/pothole.toml": FORM, "route.toml": HAZARD_RULE})
    reloader = RuleReloader(root)
    assert reloader.reload()
    live = reloader.current
    assert live is not None and "pothole" in live.forms
    (root / "forms" / "pothole.toml").write_text(FORM.replace('"roads"', '"nowhere"'))
    assert not reloader.reload()
    assert any("forms/pothole.toml:2: unknown queue 'nowhere'" in str(e) for e in reloader.errors)
    assert reloader.current is live  # the old set, forms included, still routes
    assert reloader.current.forms["pothole"].queue == "roads"


def test_rules_check_validates_forms(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_rules(tmp_path / "r", {"forms/pothole.toml": FORM})
    assert cli.check(root) == 0
    assert "1 forms" in capsys.readouterr().out
    (root / "forms" / "pothole.toml").write_text(FORM.replace('type = "choice"', 'type = "dial"'))
    assert cli.check(root) == 1
    assert f"{root}/forms/pothole.toml:7: " in capsys.readouterr().err


def form_ctx(fields: dict[str, object], form_id: str = "pothole") -> object:
    base = ctx("", channel="webform")
    msg: InboundMessage = base.message
    meta = {"form": {"id": form_id, "fields": fields}}
    return type(base)(**{**{k: getattr(base, k) for k in base.__dataclass_fields__},
                         "message": InboundMessage(**{
                             **{k: getattr(msg, k) for k in msg.__dataclass_fields__},
                             "meta": meta})})


def test_a_rule_routes_on_a_form_field(tmp_path: Path) -> None:
    root = write_rules(tmp_path / "r", {"forms/pothole.toml": FORM, "route.toml": HAZARD_RULE})
    ruleset = load_rules(root)
    urgent = ruleset.decide(form_ctx({"hazard": "yes"}))  # type: ignore[arg-type]
    assert urgent.queue == "roads" and urgent.priority == "urgent"
    assert "form.hazard" in fired(urgent)
    calm = ruleset.decide(form_ctx({"hazard": "no"}))  # type: ignore[arg-type]
    assert calm.queue == "general" and "form.hazard" not in fired(calm)
    assert ruleset.decide(ctx("hazard yes")).queue == "general"  # not a form: no form fields


def test_form_conditions_are_checked_against_the_forms(tmp_path: Path) -> None:
    rules = HAZARD_RULE.replace('form.hazard = "yes"', 'form.hazard = "maybe"') + (
        '\n[[rule]]\nid = "x"\nphase = "enrich"\norder = 5\nwhen.form.colour.contains = "red"\n'
        'then.tags.add = ["red"]\n'
        '\n[[rule]]\nid = "y"\nphase = "enrich"\norder = 6\nwhen.form.id = "nope"\n'
        'then.tags.add = ["y"]\n')
    root = write_rules(tmp_path / "r", {"forms/pothole.toml": FORM, "route.toml": rules})
    found = errors_of(root)
    where = f"{root}/route.toml"
    assert any(e.startswith(f"{where}:6: unknown choice of 'hazard' 'maybe'") for e in found)
    assert any(e.startswith(f"{where}:14: no form has a field 'colour'") for e in found), found
    assert any(e.startswith(f"{where}:21: unknown form 'nope'") for e in found), found


def test_shipped_form_rule_has_a_rule_test() -> None:
    # `hub rules test` over the shipped folder covers the form rule (see tests/examples.toml)
    text = (SHIPPED / "tests" / "examples.toml").read_text()
    assert 'fired = ["roads.form-hazard"]' in text
    root = SHIPPED
    assert cli.test(root) == 0


def test_copy_of_shipped_rules_refuses_a_broken_shipped_form(tmp_path: Path) -> None:
    root = tmp_path / "rules"
    shutil.copytree(SHIPPED, root)
    (root / "forms" / "noise.toml").write_text(
        (SHIPPED / "forms" / "noise.toml").read_text().replace('type = "location"',
                                                               'type = "gps"'))
    assert any("forms/noise.toml:" in e for e in errors_of(root))
