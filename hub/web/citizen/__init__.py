"""The citizen pages: the portal (`/`), the web forms (`/forms/{id}`), the tracking pages
(`/track/{reference}`), the satisfaction survey (`/survey/{token}`) and the web chat's pages
(`/chat`, `/chat/widget.js`), server-rendered (aiohttp-jinja2, templates in
hub/web/templates/citizen, a style sheet in hub/web/static/citizen) and working with JavaScript
off, in every language of `[hub] languages`.

`setup_citizen(app)` mounts them on the main application (the portal owns `/`, so they cannot
be a sub-application): pages in `pages`, `track`, `survey` and `chat`, languages in `i18n`,
form bodies in `body`, fields as shown in `widgets`, and headers, CSRF, rate limit and error
pages in `guard`.
"""

from __future__ import annotations

from aiohttp import web

from hub.web.citizen import chat, files, guard, pages, survey, track, transparency
from hub.web.html import WEB, setup_templates

FORM = "/forms/{form_id:[a-z0-9][a-z0-9_-]{0,63}}"
TRACK = "/track/{reference:[A-Za-z0-9]{1,32}}"
SURVEY = "/survey/{token:[A-Za-z0-9_-]{1,64}}"


def setup_citizen(app: web.Application) -> None:
    setup_templates(app)
    guard.install(app)
    app.middlewares.append(guard.citizen_errors)
    app.router.add_get("/", pages.portal)
    app.router.add_get(FORM, pages.form_page)
    app.router.add_post(FORM, pages.form_submit)
    app.router.add_get("/track", pages.track_lookup)
    app.router.add_get(TRACK, track.track_page)
    app.router.add_post(TRACK, track.add_message)
    app.router.add_get(TRACK + "/files/{token:[0-9a-f-]{1,64}}", files.track_file)
    app.router.add_get(SURVEY, survey.survey_page)
    app.router.add_post(SURVEY, survey.survey_answer)
    app[transparency.CACHE_KEY] = transparency.FiguresCache()
    app.router.add_get("/transparency", transparency.transparency_page)
    chat.setup_chat(app)  # after guard.install: its headers hook runs after the pages' own
    app.router.add_static(guard.STATIC_PREFIX, WEB / "static" / "citizen",
                          name="citizen_static", append_version=True)
