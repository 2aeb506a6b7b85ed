"""Line numbers for TOML keys: tomllib gives none, so we find them by scanning the file text.

Good enough for admin messages: the line of the `[[rule]]` header, of a key inside that rule
(dotted keys, sub-tables or inline tables), or of a value such as a regex inside a list.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

Span = tuple[int, int]  # 1-based first line, last line (inclusive)


class LineFinder:
    def __init__(self, text: str) -> None:
        self.lines = text.splitlines() or [""]

    def headers(self, table: str) -> list[int]:
        """Lines of each `[[table]]` header, in file order (the k-th is the k-th array item)."""
        pat = re.compile(r"^\s*\[\[\s*" + re.escape(table) + r"\s*\]\]")
        return [i + 1 for i, line in enumerate(self.lines) if pat.match(line)]

    def span(self, table: str, index: int) -> Span:
        heads = self.headers(table)
        if index >= len(heads):
            return (1, len(self.lines))
        start = heads[index]
        nxt = [h for h in heads if h > start]
        # The item ends where the next item begins; nested [rule.x] tables stay inside it.
        end = nxt[0] - 1 if nxt else len(self.lines)
        return (start, end)

    def whole(self) -> Span:
        return (1, len(self.lines))

    def find(self, span: Span, path: Sequence[str | int], needle: str | None = None) -> int:
        """Best line for `path` (keys from the item's root) inside `span`; `needle` refines it."""
        keys = [p for p in path if isinstance(p, str)]
        line = self._key_line(span, keys) if keys else span[0]
        if needle:
            found = self._needle_line((line, span[1]), needle)
            if found:
                return found
        return line

    def _key_line(self, span: Span, keys: list[str]) -> int:
        start, end = span
        for n in range(len(keys), 0, -1):
            dotted = ".".join(keys[-n:])
            pat = re.compile(r"^\s*" + re.escape(dotted) + r"\s*[=.]")
            for i in range(start, end + 1):
                if pat.match(self.lines[i - 1]):
                    return i
        # Inline tables or sub-table headers: the last key anywhere on a line.
        last = re.compile(r"(^|[\s{,.\[])" + re.escape(keys[-1]) + r"\s*[=.\]]")
        for i in range(start, end + 1):
            if last.search(self.lines[i - 1]):
                return i
        return start

    def _needle_line(self, span: Span, needle: str) -> int | None:
        variants = {needle, needle.replace("\\", "\\\\"), needle.replace('"', '\\"')}
        for i in range(span[0], span[1] + 1):
            if any(v and v in self.lines[i - 1] for v in variants):
                return i
        return None
