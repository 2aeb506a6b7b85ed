"""The portal and the web forms: `GET /` lists the services (the live rule set's forms) and has
a box to track a request; `GET /forms/{id}` shows a form, `POST /forms/{id}` checks it and makes
a `webform` conversation, then 303 to its tracking page.

A failed submit shows the form again with the citizen's input, an error summary at the top
(focused, each error a link to its field) and each field's message. The form page issues a form
token (a hidden field) that becomes the message's provider id, so a double submit (double click,
the back button) is stored once and lands on the same tracking page. A filled honeypot field
gets a thank-you page and nothing is stored.
"""

from __future__ import annotations

import secrets
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from hub.forms import live_forms
from hub.forms.schema import Form
from hub.forms.submit import TOKEN_RE, submit
from hub.forms.validate import validate_submission
from hub.web.citizen import i18n
from hub.web.citizen.body import Body, read_body
from hub.web.citizen.guard import check_csrf, csrf_token, page_context, rate_limit, set_csrf_cookie
from hub.web.citizen.widgets import (
    contact_hint,
    contact_widgets,
    error_messages,
    submitted_data,
    widgets,
)
from hub.web.keys import HUB_KEY

HONEYPOT = "website"  # bots fill in a field of that name; people never see it
FORM_TOKEN = "form_token"  # noqa: S105 - a field name, not a secret


def render(request: web.Request, template: str, language: i18n.Language,
           context: dict[str, Any], status: int = 200) -> web.Response:
    """A citizen page in `language`, with a CSRF cookie when the page has a form."""
    page = aiohttp_jinja2.render_template(template, request,
                                          {**page_context(request, language), **context},
                                          status=status)
    i18n.remember(request, page, language)
    return page


def with_csrf(request: web.Request, template: str, language: i18n.Language,
              context: dict[str, Any], status: int = 200) -> web.Response:
    token, fresh = csrf_token(request)
    page = render(request, template, language, {**context, "csrf": token}, status)
    if fresh:
        set_csrf_cookie(request, page, token)
    return page


def forms_of(request: web.Request) -> dict[str, Form]:
    return live_forms(request.app[HUB_KEY].rules)


def phone_region(request: web.Request) -> str:
    rules = request.app[HUB_KEY].rules
    current = rules.current if rules is not None else None
    return current.settings.phone_region if current is not None else "US"


async def portal(request: web.Request) -> web.Response:
    language = i18n.choose(request)
    services = [{"id": form.id, "title": form.text(form.title, language.code),
                 "description": form.text(form.description, language.code)
                 if form.description else ""} for form in forms_of(request).values()]
    return render(request, "citizen/portal.html", language, {
        "title": language._("City services"), "services": services,
        "chat": request.app[HUB_KEY].settings.webchat.enabled})


async def track_lookup(request: web.Request) -> web.Response:
    """The portal's "track a request" box (a GET form) -> the tracking page."""
    typed = "".join(ch for ch in request.query.get("reference", "")[:64] if ch.isalnum())
    raise web.HTTPSeeOther(f"/track/{typed.upper()}" if typed else "/#track")


def _form(request: web.Request) -> Form:
    form = forms_of(request).get(request.match_info["form_id"])
    if form is None:
        raise web.HTTPNotFound()
    return form


def _form_page(request: web.Request, form: Form, language: i18n.Language, *,
               body: Body | None = None, errors: dict[str, str] | None = None,
               token: str | None = None, status: int = 200) -> web.Response:
    errors = errors or {}
    fields = widgets(form, language, body, errors)
    contact = contact_widgets(form, language, body, errors)
    summary = [(w.anchor, w.error) for w in [*fields, *contact] if w.error]
    title = form.text(form.title, language.code)
    return with_csrf(request, "citizen/form.html", language, {
        "title": language._("Error: {title}", title=title) if summary else title,
        "heading": title, "form": form, "description": form.text(form.description,
                                                                 language.code),
        "fields": fields, "contact": contact, "contact_hint": contact_hint(form, language),
        "summary": summary, "token": token or secrets.token_urlsafe(24),
        "has_files": any(w.kind == "file" for w in fields), "honeypot": HONEYPOT,
    }, status)


async def form_page(request: web.Request) -> web.Response:
    return _form_page(request, _form(request), i18n.choose(request))


async def form_submit(request: web.Request) -> web.Response:
    form = _form(request)
    rate_limit(request)
    body = await read_body(request, form.field)
    check_csrf(request, body.one("csrf"))
    language = i18n.choose(request)
    if body.one(HONEYPOT):  # a bot: it is thanked and forgotten
        return render(request, "citizen/received.html", language,
                      {"title": language._("Thank you")})
    token = body.one(FORM_TOKEN)
    if not TOKEN_RE.match(token):
        token = secrets.token_urlsafe(24)
    checked = validate_submission(form, submitted_data(form, body), body.files,
                                  phone_region=phone_region(request))
    if checked.clean is None:
        return _form_page(request, form, language, body=body, token=token,
                          errors=error_messages(checked.errors, language), status=400)
    accepted = await submit(request.app[HUB_KEY].intake, checked.clean, token=token,
                            language=language.code)
    raise web.HTTPSeeOther(f"/track/{accepted.reference}")
