"""Text matching shared by all rules: normalisation, required literals of regexes, one scanner.

Why: with a thousand rules, testing every keyword and regex against every message costs a
millisecond or more. Instead every keyword, and a literal that each regex cannot match without
("trigger"), goes into one trie-shaped regex. One pass over a message yields the set of triggers
present; a keyword test is then a set lookup and a regex runs only if one of its triggers is
present. Rules are indexed by their triggers, so rules whose text clause cannot match are never
evaluated (see compile.py). Cost grows with the message length and the trie depth, not the number
of rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from re import _constants as sre_c  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

REGEX_FLAGS = re.IGNORECASE | re.UNICODE
MIN_TRIGGER = 2  # a one-letter trigger would be present in nearly every message
MAX_TEXT = 20_000  # regexes see at most this much text: bounds the cost of a hostile message


def norm(text: str) -> str:
    """Case-insensitive, Unicode-aware form used by keyword tests and by the trigger scan.

    The two replacements make the scan sound for regexes compiled with IGNORECASE: `re` lets
    ASCII `i` match the Turkish dotted/dotless I, which casefold alone would not turn into `i`.
    """
    return text.replace("\u0130", "i").casefold().replace("\u0131", "i")


def _ok_char(code: int) -> bool:
    # Only ASCII (no newline) is used in regex triggers: their case-insensitive matches are
    # exactly the characters that norm() maps back to them.
    return 32 <= code < 127


def _best(reqs: list[frozenset[str]]) -> frozenset[str] | None:
    good = [r for r in reqs if r and min(len(s) for s in r) >= MIN_TRIGGER]
    if not good:
        return None
    return max(good, key=lambda r: (min(len(s) for s in r), -len(r)))


def _requirements(items: Any) -> list[frozenset[str]]:
    """Sets of literals, one of which must occur, for a parsed regex sequence."""
    reqs: list[frozenset[str]] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            reqs.append(frozenset({norm("".join(run))}))
            run.clear()

    for op, av in items:
        if op is sre_c.LITERAL and _ok_char(av):
            run.append(chr(av))
        elif op is sre_c.AT:
            continue  # zero-width (\b, ^): the literal run around it stays contiguous
        elif op is sre_c.SUBPATTERN:
            flush()
            best = _best(_requirements(av[-1]))
            if best:
                reqs.append(best)
        elif op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, getattr(sre_c, "POSSESSIVE_REPEAT", None)):
            flush()
            if av[0] >= 1:
                best = _best(_requirements(av[2]))
                if best:
                    reqs.append(best)
        elif op is sre_c.BRANCH:
            flush()
            alts = [_best(_requirements(alt)) for alt in av[1]]
            if alts and all(alts):
                reqs.append(frozenset().union(*alts))  # type: ignore[arg-type]
        else:
            flush()
    flush()
    return reqs


def regex_triggers(pattern: str) -> frozenset[str] | None:
    """Literals (normalised) one of which any match must contain; None: cannot tell."""
    try:
        parsed = sre_parse.parse(pattern, REGEX_FLAGS)
    except re.error:
        return None
    if parsed.state.flags & re.VERBOSE:
        return None  # keep it simple: verbose patterns are always evaluated
    return _best(_requirements(list(parsed)))


def _trie_regex(words: Iterable[str]) -> str:
    trie: dict[str, Any] = {}
    for w in words:
        node = trie
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = True

    def build(node: dict[str, Any]) -> str:
        end = "" in node
        alts = [re.escape(ch) + build(sub) for ch, sub in sorted(node.items()) if ch]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        # Greedy optional: at each position the longest trigger wins; shorter ones that are its
        # prefixes are added back through `prefixes` below.
        return "(?:" + body + ")?" if end else body

    return build(trie)


class TriggerScanner:
    """Finds every trigger present in a text (overlapping ones included) in one regex pass."""

    def __init__(self, triggers: Iterable[str]) -> None:
        words = sorted({t for t in triggers if t})
        self.triggers = frozenset(words)
        self._rx = re.compile("(?=(" + _trie_regex(words) + "))", re.DOTALL) if words else None
        wordset = set(words)
        self._prefixes: dict[str, frozenset[str]] = {
            w: frozenset(w[:i] for i in range(1, len(w) + 1) if w[:i] in wordset) for w in words
        }

    def scan(self, normalised: str) -> frozenset[str]:
        if self._rx is None or not normalised:
            return frozenset()
        longest = {m.group(1) for m in self._rx.finditer(normalised)}
        longest.discard("")
        if not longest:
            return frozenset()
        found: set[str] = set()
        for w in longest:
            found |= self._prefixes[w]
        return frozenset(found)
