"""Auto-reply and acknowledgment texts: `templates/<language>/<name>.txt`, rendered with Jinja2.

The environment is sandboxed and only ever compiles the admins' files: citizen text (subject,
name) enters as a variable's value and is never parsed as a template. Autoescape is off because
the output is plain text. An optional first line `Subject: ...` is the subject template.
Unknown variables are load-time errors (`path:line`), so a typo never reaches a citizen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from hub.routing.errors import RuleError

VARIABLES = frozenset(
    {"reference", "subject", "sender_name", "channel", "queue", "rule", "language", "received_at",
     # set when an auto-reply's text goes inside the acknowledgment, and that text there
     "embedded", "notices",
     # the status notices' (hub.notices): the tracking page, and the survey's page or ""
     "tracking_url", "survey_url"}
)


@dataclass(frozen=True, slots=True)
class Rendered:
    name: str
    language: str
    subject: str | None
    body: str


@dataclass(frozen=True, slots=True)
class _Template:
    subject: jinja2.Template | None
    body: jinja2.Template


def _env() -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        autoescape=False, undefined=jinja2.StrictUndefined, keep_trailing_newline=False
    )


def compile_text(env: jinja2.Environment, source: str) -> jinja2.Template:
    """`env.from_string(source)`, for a template rendered with every message it applies to.

    Jinja hands each template its globals as a ChainMap over the environment's, and every
    render copies them into a new context twice, walking that ChainMap each time: about
    two thirds of rendering a one-line text. Neither ever changes after loading, so the
    template keeps them as one plain dict (same names, same values)."""
    template = env.from_string(source)
    template.globals = dict(template.globals)
    return template


class TemplateStore:
    def __init__(self, default_language: str) -> None:
        self.default_language = default_language
        self._env = _env()
        self._by_key: dict[tuple[str, str], _Template] = {}

    @property
    def names(self) -> set[str]:
        return {name for name, _ in self._by_key}

    def languages(self, name: str) -> set[str]:
        return {lang for n, lang in self._by_key if n == name}

    def has(self, name: str, language: str | None = None) -> bool:
        return (name, language or self.default_language) in self._by_key

    def add(self, name: str, language: str, source: str, display: str) -> list[RuleError]:
        subject_src, body_src, offset = _split(source)
        errors: list[RuleError] = []
        compiled: list[jinja2.Template | None] = []
        for src, first_line in ((subject_src, 1), (body_src, 1 + offset)):
            if src is None:
                compiled.append(None)
                continue
            try:
                ast = self._env.parse(src)
                unknown = meta.find_undeclared_variables(ast) - VARIABLES
                if unknown:
                    line = _line_of(src, sorted(unknown)[0]) + first_line - 1
                    errors.append(RuleError(display, line, _unknown_msg(unknown)))
                compiled.append(compile_text(self._env, src))
            except jinja2.TemplateSyntaxError as exc:
                errors.append(
                    RuleError(
                        display, (exc.lineno or 1) + first_line - 1, exc.message or "syntax error"
                    )
                )
                compiled.append(None)
        if not errors and compiled[1] is not None:
            self._by_key[(name, language)] = _Template(compiled[0], compiled[1])
        return errors

    def render(self, name: str, language: str | None, variables: dict[str, Any]) -> Rendered:
        """Render in `language`, falling back to the default language."""
        lang = language if language and (name, language) in self._by_key else self.default_language
        tpl = self._by_key[(name, lang)]
        values = {k: ("" if variables.get(k) is None else variables[k]) for k in VARIABLES}
        subject = None
        if tpl.subject is not None:
            # One line, whatever the citizen's subject held: it ends up in a mail header.
            subject = " ".join(tpl.subject.render(values).split())
        return Rendered(name=name, language=lang, subject=subject, body=tpl.body.render(values))


def _split(source: str) -> tuple[str | None, str, int]:
    first, _, rest = source.partition("\n")
    if first.lower().startswith("subject:"):
        return first.split(":", 1)[1].strip(), rest, 1
    return None, source, 0


def _line_of(src: str, word: str) -> int:
    for i, line in enumerate(src.splitlines(), 1):
        if word in line:
            return i
    return 1


def _unknown_msg(unknown: set[str]) -> str:
    names = ", ".join(sorted(unknown))
    return f"unknown template variable(s) {names}; available: {', '.join(sorted(VARIABLES))}"


def load_templates(
    root: Path, rel: str, default_language: str
) -> tuple[TemplateStore, list[RuleError]]:
    store = TemplateStore(default_language)
    errors: list[RuleError] = []
    if not root.is_dir():
        return store, errors
    for path in sorted(root.glob("*/*.txt")):
        display = f"{rel}/{path.parent.name}/{path.name}"
        errors += store.add(path.stem, path.parent.name, path.read_text(encoding="utf-8"), display)
    return store, errors
