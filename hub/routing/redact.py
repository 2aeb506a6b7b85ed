"""Shortening personal data for traces: enough to debug a rule, not enough to identify someone."""

from __future__ import annotations

from typing import Any

TEXT_CHARS = 40
# Enough of a text to hold its first TEXT_CHARS once whitespace is squeezed, nearly always.
_HEAD = 4 * TEXT_CHARS


def email(value: str) -> str:
    local, _, domain = value.partition("@")
    return f"{local[:1]}***@{domain}" if domain else text(value)


def phone(value: str) -> str:
    digits = [c for c in value if c.isdigit()]
    return "***" + "".join(digits[-4:])


def text(value: str) -> str:
    # Traces show a message's text for every clause on it: squeezing the whole text (often
    # kilobytes) for 40 characters was most of a trace's cost. Squeezing a prefix gives a
    # prefix of the whole squeezed text, so when it is longer than TEXT_CHARS it is the answer.
    flat = " ".join(value[:_HEAD].split())
    if len(flat) <= TEXT_CHARS and len(value) > _HEAD:
        flat = " ".join(value.split())
    return flat if len(flat) <= TEXT_CHARS else flat[:TEXT_CHARS] + "…"


def identity(value: str | None) -> str | None:
    """An address of any channel: email, E.164 phone, chat or visitor id."""
    if value is None:
        return None
    if "@" in value:
        return email(value)
    if value.lstrip("+").isdigit() and len(value) > 4:
        return phone(value)
    return text(value)


_PLAIN = (str, int, float, bool)


def jsonable(value: Any) -> Any:
    """Plain JSON values of `value`, dataclasses included (as `asdict` would give them)."""
    # Every clause of every rule goes through here per message: the common kinds first.
    if value is None or isinstance(value, _PLAIN):
        return value
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, frozenset | set):
        return sorted(jsonable(v) for v in value)
    fields = getattr(value, "__dataclass_fields__", None)
    if fields is not None and not isinstance(value, type):
        return {name: jsonable(getattr(value, name)) for name in fields}
    return str(value)
