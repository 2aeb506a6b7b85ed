"""The citizen pages' languages: Accept-Language matching, and a Spanish catalog that has every
text the pages and their code mark for translation (extracted as `pybabel extract` would)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir

from hub.web.citizen.i18n import LOCALES, Language, _from_header, translations

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(("header", "expected"), [
    ("es-MX,es;q=0.9,en;q=0.8", "es"),
    ("fr-FR, en;q=0.5, es;q=0.7", "es"),
    ("de, fr", None),
    ("es;q=0, en", "en"),
    ("es;q=abc, en;q=0.2", "en"),
    ("", None),
])
def test_accept_language_picks_the_best_offered_language(header: str,
                                                         expected: str | None) -> None:
    assert _from_header(header, ("en", "es")) == expected


def _extracted() -> set[str]:
    mapping = [("hub/web/citizen/**.py", "python"),
               ("hub/web/templates/citizen/**.html", "jinja2")]
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(ROOT, mapping):
        found.add(message if isinstance(message, str) else message[0])
    return found


def test_the_spanish_catalog_is_complete() -> None:
    texts = _extracted()
    assert {"Skip to main content", "There is a problem", "Resolved"} <= texts
    spanish = translations("es")
    untranslated = sorted(t for t in texts if spanish.gettext(t) == t and t not in (
        "Error: {title}", "Error:"))
    assert untranslated == []
    assert (LOCALES / "es" / "LC_MESSAGES" / "messages.po").is_file()


def test_dates_and_texts_follow_the_language() -> None:
    moment = datetime(2026, 3, 5, 14, 30, tzinfo=UTC)
    assert Language("es", False).when(moment) == "5 mar 2026, 14:30:00"
    assert Language("en", False).when(moment).startswith("Mar 5, 2026")
    assert Language("es", False)._("Request {reference}", reference="X") == "Solicitud X"
