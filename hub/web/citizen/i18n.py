"""The citizen's language: which one a request gets, the page texts in it and its dates.

Choice: `?lang=xx` (then remembered in the `hub_lang` cookie), else the cookie, else the best
`Accept-Language` match, else `[hub] default_language`; only `[hub] languages` are offered.

Catalogs are Babel `.po` files, `hub/locales/<lang>/LC_MESSAGES/messages.po`, read at start-up
with Babel's `read_po` and turned into gettext `Translations` in memory, so there is no compile
step to forget: adding a language is dropping its `.po` file (and listing it in `[hub]
languages`). English is the source language of the page texts: it needs no catalog.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web
from babel import Locale, UnknownLocaleError
from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

from hub.web.html import is_secure
from hub.web.keys import HUB_KEY

LOCALES = Path(__file__).resolve().parents[2] / "locales"
LANG_COOKIE = "hub_lang"
LANG_PARAM = "lang"


def N_(text: str) -> str:
    """Marks a text for the catalog where it is defined; it is translated where it is shown."""
    return text


@functools.cache
def translations(language: str) -> NullTranslations:
    """The catalog of `language` (an empty one when it has none: the English source texts)."""
    path = LOCALES / language / "LC_MESSAGES" / "messages.po"
    if not path.is_file():
        return NullTranslations()
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=language)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer)


@dataclass(frozen=True, slots=True)
class Language:
    code: str
    chosen_by_param: bool  # True: remember it in the cookie

    @property
    def gettext(self) -> NullTranslations:
        return translations(self.code)

    def _(self, text: str, **values: object) -> str:
        translated = self.gettext.gettext(text)
        return translated.format(**values) if values else translated

    def when(self, moment: datetime, timezone: str = "UTC") -> str:
        """A date and time as people write it in this language."""
        return format_datetime(moment, "medium", tzinfo=_tz(timezone), locale=self.code)


def _tz(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def offered(request: web.Request) -> tuple[str, ...]:
    settings = request.app[HUB_KEY].settings.hub
    return tuple(dict.fromkeys([settings.default_language, *settings.languages]))


def choose(request: web.Request, known: str | None = None) -> Language:
    """The page's language; `known` (the citizen's stored one, where the page is theirs alone,
    as a survey) comes after the explicit choice and before the browser's."""
    languages = offered(request)
    asked = request.query.get(LANG_PARAM, "")
    if asked in languages:
        return Language(asked, True)
    remembered = request.cookies.get(LANG_COOKIE, "")
    if remembered in languages:
        return Language(remembered, False)
    if known in languages:
        return Language(known, False)
    header = _from_header(request.headers.get("Accept-Language", ""), languages)
    return Language(header or request.app[HUB_KEY].settings.hub.default_language, False)


def _from_header(header: str, languages: tuple[str, ...]) -> str | None:
    """The offered language the browser likes best (`es-MX;q=0.9` counts as `es`)."""
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(header.split(",")[:20]):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        base = tag.strip().lower().split("-")[0]
        if base in languages and quality > 0:
            ranked.append((-quality, position, base))
    return min(ranked)[2] if ranked else None


def remember(request: web.Request, response: web.StreamResponse, language: Language) -> None:
    if language.chosen_by_param:
        response.set_cookie(LANG_COOKIE, language.code, max_age=365 * 24 * 3600, path="/",
                            httponly=True, samesite="Lax", secure=is_secure(request))


@functools.cache
def native_name(code: str) -> str:
    """"English", "Español": how the language switcher names each language."""
    try:
        name = Locale.parse(code).get_display_name(code) or code
    except (UnknownLocaleError, ValueError):
        return code
    return name[:1].upper() + name[1:]
