"""Errors an admin sees about the rule files: always `path:line: message`, never a stack trace."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class RuleError:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


class RuleSetInvalid(Exception):
    """Raised by the loader with every error found (it keeps going after the first one)."""

    def __init__(self, errors: list[RuleError]) -> None:
        self.errors = sorted(set(errors))
        super().__init__("\n".join(str(e) for e in self.errors))
