"""Named lists in `lists/<name>.txt`: addresses, phone numbers, keywords; one entry per line.

Entries are normalised at load so that comparisons at routing time are set lookups: emails are
lower-cased, `@domain` entries match a whole domain, phone numbers become E.164 (national formats
use the settings' `phone_region`), anything else is a keyword (case-folded). A first-line
directive `# type: phone` forces every entry to be read as a phone number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from hub.identities import InvalidAddress, normalize_phone
from hub.routing.errors import RuleError
from hub.routing.textmatch import norm

_PHONEISH = re.compile(r"^\+?[\d\s().-]{5,}$")
_TYPES = ("auto", "phone", "email", "keyword", "id")


@dataclass(slots=True)
class NamedList:
    name: str
    path: str
    entries: frozenset[str] = frozenset()  # exact identities (emails, E.164, ids)
    domains: frozenset[str] = frozenset()  # "example.org" from "@example.org"
    keywords: frozenset[str] = frozenset()  # normalised words/phrases for text tests
    all_values: tuple[str, ...] = field(default_factory=tuple)

    def has_sender(self, sender: str) -> bool:
        s = sender.lower()
        if s in self.entries or norm(s) in self.keywords:
            return True
        return "@" in s and s.rsplit("@", 1)[1] in self.domains


def to_e164(raw: str, region: str) -> str | None:
    try:
        return normalize_phone(raw, region)
    except InvalidAddress:
        return None


def _entry(raw: str, kind: str, region: str) -> tuple[str, str] | str:
    """(bucket, value) or an error message."""
    if kind == "phone" or (kind == "auto" and raw.startswith("+") and _PHONEISH.match(raw)):
        e164 = to_e164(raw, region)
        return ("entries", e164) if e164 else f"not a valid phone number: {raw!r}"
    if kind in ("auto", "email") and raw.startswith("@") and "." in raw:
        return ("domains", raw[1:].lower())
    if kind in ("auto", "email") and "@" in raw:
        return ("entries", raw.lower())
    if kind == "email":
        return f"not an email address: {raw!r}"
    if kind == "id":
        return ("entries", raw)
    return ("keywords", norm(raw))


def load_list(path: Path, display: str, region: str) -> tuple[NamedList, list[RuleError]]:
    buckets: dict[str, set[str]] = {"entries": set(), "domains": set(), "keywords": set()}
    errors: list[RuleError] = []
    kind = "auto"
    values: list[str] = []
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = line.strip()
        directive = re.match(r"^#\s*type\s*:\s*(\w+)", text)
        if directive:
            kind = directive.group(1).lower()
            if kind not in _TYPES:
                errors.append(RuleError(display, no, f"unknown list type {kind!r}: use {_TYPES}"))
                kind = "auto"
            continue
        if not text or text.startswith("#"):
            continue
        got = _entry(text, kind, region)
        if isinstance(got, str):
            errors.append(RuleError(display, no, got))
            continue
        buckets[got[0]].add(got[1])
        values.append(got[1])
    named = NamedList(
        name=path.stem,
        path=display,
        entries=frozenset(buckets["entries"]),
        domains=frozenset(buckets["domains"]),
        keywords=frozenset(buckets["keywords"]),
        all_values=tuple(values),
    )
    return named, errors
