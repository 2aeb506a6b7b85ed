"""Text that is safe to store: the column types that clean and fit every value written to them.

Whatever a channel hands over (a 600-character Message-ID, a NUL in a header, a lone surrogate
from a broken encoding, a subject that our own "Re: ... [#REF]" pushes past the column) must be
storable on SQLite and on PostgreSQL alike, or the message behind it would fail forever. So the
limits live in one place, the table definitions, and these types apply them to every bound
value, on insert, update and look-up alike:

- NUL and lone surrogates become U+FFFD (PostgreSQL refuses both in text and JSON; UTF-8 has no
  encoding for a lone surrogate).
- `BoundedString(n)` cuts a longer value at a character boundary and marks the cut with "…".
- `KeyString(n)` is for values that are looked up (dedupe ids, thread keys, addresses): a longer
  value keeps a readable prefix and ends in a hash of the whole value, so the look-up of a long
  key finds exactly the row its insert wrote, and two long keys that share a prefix stay apart.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from sqlalchemy import JSON, String, Text, TypeDecorator
from sqlalchemy.sql import operators

MARK = "\u2026"
REPLACEMENT = "\ufffd"
_HASH_TAIL = len(MARK) + len("sha256:") + 64
_SURROGATE = re.compile("[\ud800-\udfff]")
_EXACT_OPS = frozenset({operators.eq, operators.ne, operators.in_op, operators.not_in_op})


def clean_text(value: str) -> str:
    """The value without NUL characters and lone surrogates (each replaced by U+FFFD)."""
    if "\x00" in value:
        value = value.replace("\x00", REPLACEMENT)
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = _SURROGATE.sub(REPLACEMENT, value)
    return value


def cut(value: str, limit: int) -> str:
    """At most `limit` characters; a cut value ends in "…"."""
    value = clean_text(value)
    if len(value) <= limit:
        return value
    return value[:limit - len(MARK)] + MARK


def fit_key(value: str, limit: int) -> str:
    """At most `limit` characters, the same result for the same value, different for different
    values: a longer key becomes its prefix plus a SHA-256 of the whole."""
    value = clean_text(value)
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()
    return f"{value[:max(0, limit - _HASH_TAIL)]}{MARK}sha256:{digest}"[-limit:]


def clean_json(value: Any) -> Any:
    """A JSON-able value with every string in it cleaned (keys included)."""
    try:
        # ASCII JSON shows every NUL and every surrogate as an escape: without one, nothing
        # needs cleaning, and C found that out much faster than a walk in Python would.
        dumped = json.dumps(value)
    except (TypeError, ValueError):
        return _clean_json(value)
    return _clean_json(value) if _needs_cleaning(dumped) else value


def _needs_cleaning(dumped: str) -> bool:
    """Does ASCII JSON hold a NUL or a surrogate (an escaped one: it may be a lone one)?"""
    return "\\u0000" in dumped or "\\ud" in dumped


def _clean_json(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(str(k)): _clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_json(v) for v in value]
    return value


class _Fitted(TypeDecorator[str]):
    impl = String
    cache_ok = True

    def __init__(self, length: int) -> None:
        super().__init__(length)
        self.limit = length

    def coerce_compared_value(self, op: Any, value: Any) -> Any:
        # A LIKE pattern is not a stored value: fitting it would change the search.
        return self if op in _EXACT_OPS else String()

    def fit(self, value: str) -> str:
        raise NotImplementedError

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else self.fit(str(value))


class BoundedString(_Fitted):
    """String(n) that cuts what does not fit, marked, and cleans the rest."""

    cache_ok = True

    def fit(self, value: str) -> str:
        return cut(value, self.limit)


class KeyString(_Fitted):
    """String(n) for looked-up keys: what does not fit is hashed the same way on every write
    and every look-up."""

    cache_ok = True

    def fit(self, value: str) -> str:
        return fit_key(value, self.limit)


class CleanText(TypeDecorator[str]):
    """Unbounded text without NULs and lone surrogates."""

    impl = Text
    cache_ok = True

    def coerce_compared_value(self, op: Any, value: Any) -> Any:
        return self if op in _EXACT_OPS else Text()

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else clean_text(str(value))


class CleanJSON(TypeDecorator[Any]):
    """JSON whose strings are cleaned (PostgreSQL refuses \\u0000 and lone surrogates)."""

    impl = JSON
    cache_ok = True

    def bind_processor(self, dialect: Any) -> Any:
        # Serialised once: the check for what needs cleaning reads JSON's own output (as
        # clean_json does), instead of dumping each value once to check and again to store.
        serialize = self.impl_instance.bind_processor(dialect)
        if serialize is None:  # the driver serialises: hand it the cleaned value
            return clean_json

        def process(value: Any) -> Any:
            dumped = serialize(value)
            if not isinstance(dumped, str) or _needs_cleaning(dumped):
                return serialize(_clean_json(value))
            return dumped

        return process


def column_limit(column: Any) -> int:
    """The declared length of a string column (a table's column or an ORM attribute)."""
    length = getattr(column.type, "length", None) or getattr(column.type, "limit", None)
    if not length:
        raise ValueError(f"{column} has no length")
    return int(length)
