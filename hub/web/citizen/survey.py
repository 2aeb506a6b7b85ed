"""`/survey/{token}`: the satisfaction survey sent with a resolution notice (hub.notices).

`GET` shows a rating 1-5 (radio buttons in a fieldset) and an optional comment, in the
citizen's language (an explicit choice first, else the conversation's or the contact's); `POST`
(CSRF as the other citizen forms) stores the answer once (hub.survey) and redirects (303) to
the thank-you page. A survey answered already, by the page or by a digit texted back, shows a
page saying so (the POST with 409); a wrong token is the citizen pages' polite 404.
"""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select

from hub import survey
from hub.storage.tables import Contact, Conversation, Survey
from hub.web.citizen import i18n
from hub.web.citizen.body import read_body
from hub.web.citizen.guard import check_csrf, rate_limit
from hub.web.citizen.i18n import N_
from hub.web.citizen.pages import render, with_csrf
from hub.web.keys import HUB_KEY

RATING_WORDS = {1: N_("Very dissatisfied"), 2: N_("Dissatisfied"),
                3: N_("Neither satisfied nor dissatisfied"), 4: N_("Satisfied"),
                5: N_("Very satisfied")}


async def _survey(request: web.Request) -> tuple[Survey, str, str | None]:
    """The survey of the token in the path, its conversation's reference and language."""
    async with request.app[HUB_KEY].db.read() as session:
        found = await survey.by_token(session, request.match_info["token"])
        if found is None:
            raise web.HTTPNotFound()
        row = (await session.execute(
            select(Conversation.reference, Conversation.language, Contact.language)
            .join(Contact, Contact.id == Conversation.contact_id)
            .where(Conversation.id == found.conversation_id))).one()
    return found, row[0], row[1] or row[2]


def _answered(request: web.Request, language: i18n.Language, reference: str, *,
              thanks: bool, status: int = 200) -> web.Response:
    title = (language._("Thank you for your answer") if thanks
             else language._("This survey has already been answered"))
    return render(request, "citizen/survey_done.html", language, {
        "title": title, "reference": reference, "thanks": thanks}, status)


def _form(request: web.Request, language: i18n.Language, reference: str, *,
          typed: dict[str, str] | None = None, error: tuple[str, str] | None = None,
          status: int = 200) -> web.Response:
    typed = typed or {}
    title = language._("How did we do?")
    return with_csrf(request, "citizen/survey.html", language, {
        "title": language._("Error: {title}", title=title) if error else title,
        "heading": title, "reference": reference, "token": request.match_info["token"],
        "ratings": [(n, f"{n} - {language._(RATING_WORDS[n])}") for n in survey.RATINGS],
        "rating": typed.get("rating", ""), "comment": typed.get("comment", ""),
        "error_at": error[0] if error else "", "error": error[1] if error else "",
    }, status)


async def survey_page(request: web.Request) -> web.Response:
    rate_limit(request)
    found, reference, known = await _survey(request)
    language = i18n.choose(request, known)
    if found.answered_at is not None:
        return _answered(request, language, reference, thanks=request.query.get("sent") == "1")
    return _form(request, language, reference)


async def survey_answer(request: web.Request) -> web.Response:
    rate_limit(request)
    found, reference, known = await _survey(request)
    body = await read_body(request, [])
    check_csrf(request, body.one("csrf"))
    language = i18n.choose(request, known)
    typed = {"rating": body.one("rating"), "comment": body.one("comment").strip()}
    rating, error = _checked(typed, language)
    if error or rating is None:
        return _form(request, language, reference, typed=typed, error=error, status=400)
    async with request.app[HUB_KEY].db.transaction() as session:
        stored = await survey.answer(session, found.id, rating, typed["comment"], survey.WEB)
    if not stored:
        return _answered(request, language, reference, thanks=False, status=409)
    raise web.HTTPSeeOther(f"/survey/{request.match_info['token']}?sent=1")


def _checked(typed: dict[str, str], language: i18n.Language
             ) -> tuple[int | None, tuple[str, str] | None]:
    """The rating, or the error: (the field's id, the message)."""
    if len(typed["comment"]) > survey.COMMENT_MAX:
        return None, ("f-comment", language._("Your comment must be {max} characters or fewer",
                                              max=survey.COMMENT_MAX))
    if typed["rating"] not in {str(n) for n in survey.RATINGS}:
        return None, ("f-rating", language._("Select how satisfied you are"))
    return int(typed["rating"]), None

