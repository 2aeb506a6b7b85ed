"""Language of a message: what the channel/citizen said, else lingua's guess among few languages.

The detector is built lazily (only when a rule or an auto-reply needs a language) and only for
the languages the rule set mentions. Spooled messages come with the guess already made, in the
parse process (`parsed_with_guess`), so the intake's serial loop does not pay for lingua. Not
in lingua's low-accuracy mode: with only two languages it called plain Spanish sentences
English (tests/unit/routing), and high accuracy over a handful of languages costs ~50 µs per
message. Short texts give no reliable answer: None.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from functools import lru_cache
from typing import Any

from hub.model import InboundMessage, LanguageGuess

log = logging.getLogger(__name__)
MIN_CHARS = 20
MIN_CONFIDENCE = 0.5


@lru_cache(maxsize=8)
def _detector(codes: frozenset[str]) -> Any:
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    isos = [
        getattr(IsoCode639_1, c.upper()) for c in sorted(codes) if hasattr(IsoCode639_1, c.upper())
    ]
    if len(isos) < 2:
        return None
    return LanguageDetectorBuilder.from_iso_codes_639_1(*isos).build()


def warm(codes: frozenset[str]) -> None:
    """Loads the detector for `codes` now: lingua loads its models (most of a second) with the
    first text it is given."""
    detect("A sentence to load the language models with.", codes)


def supported(code: str) -> bool:
    from lingua import IsoCode639_1

    return hasattr(IsoCode639_1, code.upper())


def detect(text: str, codes: frozenset[str]) -> str | None:
    """ISO 639-1 code, or None when the text is too short or the guess is unsure."""
    text = text.strip()
    if len(text) < MIN_CHARS:
        return None
    detector = _detector(codes)
    if detector is None:
        return next(iter(codes)) if len(codes) == 1 else None
    values = detector.compute_language_confidence_values(text[:2000])
    if not values or values[0].value < MIN_CONFIDENCE:
        return None
    return str(values[0].language.iso_code_639_1.name).lower()


def of_message(msg: InboundMessage, codes: frozenset[str]) -> str | None:
    """The detected language of `msg` among `codes`: its guess if made among the same ones."""
    guess = msg.language_guess
    if guess is not None and guess.codes == codes:
        return guess.code
    return detect(_text(msg), codes)


def with_guess(msg: InboundMessage, codes: frozenset[str]) -> InboundMessage:
    """`msg` with its language guessed now, where it does not state one."""
    if msg.language or not codes:
        return msg
    return replace(msg, language_guess=LanguageGuess(codes, detect(_text(msg), codes)))


def _text(msg: InboundMessage) -> str:
    return f"{msg.subject or ''}\n{msg.text}"


def parsed_with_guess(parse: Callable[[bytes, Mapping[str, Any], datetime], InboundMessage],
                      codes: frozenset[str], payload: bytes, envelope: Mapping[str, Any],
                      received_at: datetime) -> InboundMessage:
    """For the spool's parse process: the parsed message with its language guessed there too,
    so that the intake's serial loop does not pay for the detector. A guess that fails is
    not made (the intake tries again)."""
    msg = parse(payload, envelope, received_at)
    try:
        return with_guess(msg, codes)
    except Exception:
        log.exception("language detection failed")
        return msg
