"""Reads `forms/*.toml` of a rule folder into `Form`s, with `path:line: message` errors.

Called by the rule loader (hub.routing.loader) while it builds a rule set, with the loader
itself as the reader: the same TOML reading, line finding and error collection as every other
rule file, so a bad form refuses the whole rule set (and a hot reload keeps the old one live).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from hub.forms.schema import Form, FormField, Text
from hub.forms.uploads import SNIFFABLE
from hub.routing.lines import LineFinder, Span
from hub.routing.schema import QueueDecl, Settings

Reporter = Any  # hub.routing.loader.Reporter: (key path, message, needle) -> None
FORM_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class FolderReader(Protocol):
    """What the rule loader lends: its reading, reporting and what it has loaded so far."""

    root: Path
    queues: dict[str, QueueDecl]
    settings: Settings

    def disp(self, path: Path) -> str: ...

    def err(self, path: str, line: int, message: str) -> None: ...

    def read_toml(self, path: Path) -> tuple[dict[str, Any], LineFinder] | None: ...

    def reporter(self, display: str, finder: LineFinder, span: Span) -> Reporter: ...

    def model(self, cls: type[BaseModel], data: Any, report: Reporter) -> Any: ...


def load_forms(reader: FolderReader) -> dict[str, Form]:
    """Every valid form of `<root>/forms/`, by id; errors go to the reader."""
    forms: dict[str, Form] = {}
    for path in sorted((reader.root / "forms").glob("*.toml")):
        form = _load_form(reader, path)
        if form is not None:
            forms[form.id] = form
    return dict(sorted(forms.items(), key=lambda item: (item[1].order, item[0])))


def _load_form(reader: FolderReader, path: Path) -> Form | None:
    display = reader.disp(path)
    if not FORM_ID.match(path.stem):
        reader.err(display, 1, f"form id {path.stem!r} (the file name) must be lower-case "
                               "letters, digits, '-' or '_'")
        return None
    got = reader.read_toml(path)
    if got is None:
        return None
    data, finder = got
    report = _field_reporter(reader, display, finder)
    form: Form | None = reader.model(Form, data, report)
    if form is None:
        return None
    form = form.model_copy(update={"id": path.stem})
    _checks(reader, form, report)
    return form


def _field_reporter(reader: FolderReader, display: str, finder: LineFinder) -> Reporter:
    """Points errors about `field[k]...` into the k-th [[field]] table, others anywhere."""
    whole = reader.reporter(display, finder, finder.whole())

    def report(path: list[str | int], message: str, needle: str | None) -> None:
        if len(path) >= 2 and path[0] == "field" and isinstance(path[1], int):
            inner = reader.reporter(display, finder, finder.span("field", path[1]))
            inner(path[2:], message, needle)
        else:
            whole(path, message, needle)

    return report


def _checks(reader: FolderReader, form: Form, report: Reporter) -> None:
    if form.queue not in reader.queues:
        report(["queue"], f"unknown queue {form.queue!r}; declare it in queues.toml", None)
    languages = list(dict.fromkeys([reader.settings.default_language, *reader.settings.languages]))
    _languages(form.title, ["title"], "the title", languages, report)
    seen: set[str] = set()
    for k, fld in enumerate(form.field):
        if fld.id in seen:
            report(["field", k, "id"], f"duplicate field id {fld.id!r}", None)
        seen.add(fld.id)
        _field_checks(fld, ["field", k], languages, report)
    if sum(1 for f in form.field if f.type == "location") > 1:
        report(["field"], "a form takes at most one location field", None)


def _field_checks(fld: FormField, path: list[str | int], languages: list[str],
                  report: Reporter) -> None:
    _languages(fld.label, [*path, "label"], f"the label of {fld.id!r}", languages, report)
    for i, choice in enumerate(fld.choices):
        _languages(choice.label, [*path, "choices"], f"choice {choice.value!r}", languages,
                   report)
        if choice.value in fld.choice_values()[:i]:
            report([*path, "choices"], f"duplicate choice {choice.value!r}", choice.value)
    if fld.type == "file":
        for ctype in fld.content_types:
            if ctype not in SNIFFABLE:
                report([*path, "content_types"],
                       f"content type {ctype!r} cannot be checked by its content; use one of "
                       f"{', '.join(sorted(SNIFFABLE))}", ctype)


def _languages(text: Text, path: list[str | int], what: str, languages: list[str],
               report: Reporter) -> None:
    missing = [lang for lang in languages if not text.get(lang, "").strip()]
    if missing:
        report(path, f"{what} needs a text in {', '.join(missing)} (the rule set's languages)",
               None)
