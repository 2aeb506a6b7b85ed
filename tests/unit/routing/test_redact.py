"""What traces show of personal data: shortened texts, the same however long the text is."""

from __future__ import annotations

import random

import pytest

from hub.routing import redact


def _squeezed_whole(value: str) -> str:
    """The definition: the whole text with its whitespace squeezed, cut at TEXT_CHARS."""
    flat = " ".join(value.split())
    return flat if len(flat) <= redact.TEXT_CHARS else flat[:redact.TEXT_CHARS] + "…"


def _texts(count: int) -> list[str]:
    rng = random.Random(7)
    pieces = ["pothole", "on", "Elm", "Street", "é", "日本", "a" * 50, " ", "  ", "\n", "\t",
              "\n\n\n", " " * 200, "\u00a0", "\u2028", "x"]
    texts = ["", " ", "short", " " * 500 + "late start", "word " * 200,
             "a" * 39, "a" * 40, "a" * 41, "a" * 200, "\n" * 159 + "b" * 41]
    for _ in range(count):
        texts.append("".join(rng.choice(pieces) for _ in range(rng.randint(0, 80))))
    return texts


@pytest.mark.parametrize("value", _texts(400))
def test_a_text_is_shown_as_its_whole_squeezed_text_would_be(value: str) -> None:
    assert redact.text(value) == _squeezed_whole(value)


def test_a_long_text_shows_its_first_words_only() -> None:
    shown = redact.text("The streetlight   at the corner\nof Elm and 5th " + "is out " * 1000)
    assert shown == "The streetlight at the corner of Elm and…"
