"""The workspace's language: the signed-in staff member's choice (`staff.language`, set with
the small form `POST /staff/language`), else `[hub] default_language`; before sign-in, what the
citizen pages would choose (hub.web.citizen.i18n.choose: `?lang=`, cookie, browser).

The texts are translated the citizen pages' way (hub.web.citizen.i18n: the Babel catalogs of
hub/locales, English as the source language); every workspace template gets `lang` (for
`<html lang>`), `_` and the offered `languages` through aiohttp-jinja2's request context, and
`delivery_word(status)` / `delivery_words`: a reply's delivery status ("queued", "sent", ...) in
the page's language (catalog context `delivery status`, so these short words never clash with
the same English word elsewhere); live.js announces a status change with `delivery_words`.
"""

from __future__ import annotations

import warnings
from urllib.parse import urlsplit

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy import update

from hub.storage.tables import Staff
from hub.web.citizen import i18n
from hub.web.keys import HUB_KEY

Language = i18n.Language
DELIVERY_CONTEXT = "delivery status"
# hub.model.DeliveryStatus's values, and "delayed" (a report that is not final)
DELIVERY_STATUSES = ("queued", "sending", "sent", "delivered", "read", "failed", "bounced",
                     "undelivered", "delayed")


def delivery_word(language: Language, status: str | None) -> str:
    """A delivery status for people; a value this list does not know stays as it is."""
    word = status or "queued"
    if word not in DELIVERY_STATUSES:
        return word
    return str(language.gettext.pgettext(DELIVERY_CONTEXT, word))


def for_staff(request: web.Request, staff: Staff) -> Language:
    code = staff.language if staff.language in i18n.offered(request) else None
    return Language(code or request.app[HUB_KEY].settings.hub.default_language, False)


def use(request: web.Request, language: Language) -> None:
    """The request's pages speak `language`."""
    context = {"lang": language.code, "_": language._, "here": request.path_qs,
               "languages": [(code, i18n.native_name(code)) for code in i18n.offered(request)],
               "delivery_word": lambda status: delivery_word(language, status),
               "delivery_words": {s: delivery_word(language, s) for s in DELIVERY_STATUSES}}
    with warnings.catch_warnings():  # aiohttp-jinja2's own key is a plain string
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        request[aiohttp_jinja2.REQUEST_CONTEXT_KEY] = context


def before_sign_in(request: web.Request) -> None:
    use(request, i18n.choose(request))


def gettext(request: web.Request) -> Language:
    """The request's language, for texts made in Python (flash messages, errors)."""
    context = request.get(aiohttp_jinja2.REQUEST_CONTEXT_KEY) or {}
    return Language(str(context.get("lang") or "en"), False)


async def choose_language(request: web.Request) -> web.StreamResponse:
    """POST /staff/language: `language` (one of `[hub] languages`), back to `next`."""
    from hub.web.staff.guard import PREFIX, signed_in

    form = await request.post()
    code = str(form.get("language", ""))
    back = str(form.get("next", ""))
    if urlsplit(back).netloc or not back.startswith(PREFIX + "/"):
        back = PREFIX + "/"  # only back into the workspace, never elsewhere
    if code not in i18n.offered(request):
        raise web.HTTPBadRequest(text="unknown language")
    staff = signed_in(request).staff
    async with request.app[HUB_KEY].db.transaction() as session:
        await session.execute(update(Staff).where(Staff.id == staff.id).values(language=code))
    raise web.HTTPSeeOther(back)
