"""Status notices and the satisfaction survey over HTTP (SQLite and PostgreSQL): staff resolve
through the API -> the citizen's notice (their language, the tracking and survey links) is
queued and delivered; an opted-out citizen gets none and the resolve still works; the survey
page stores an answer once, shows it to staff, refuses a second kindly and 404s a wrong token.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from hub.app import Hub
from hub.model import OutboundMessage
from hub.storage.tables import Conversation, Identity, Message, Survey
from tests.support.adapter import RecordingAdapter, inbound
from tests.web.citizen.citizen import (
    POTHOLE,
    conversation_id,
    hidden,
    multipart,
    post_form,
    staff_call,
    staff_token,
)

PUBLIC = "http://127.0.0.1:8080"
SURVEY_RE = re.compile(r"/survey/([A-Za-z0-9_-]+)")


async def request_of(client: TestClient, hub: Hub, language: str = "en",
                     **fields: str) -> tuple[str, int]:
    """A pothole report filed in `language`: its reference and conversation id."""
    response = await post_form(client, {**POTHOLE, **fields},
                               headers={"Accept-Language": language})
    assert response.status == 303, await response.text()
    reference = str(response.headers["Location"]).rsplit("/", 1)[1]
    return reference, await conversation_id(hub, reference)


async def set_status(client: TestClient, token: str, conv: int, status: str) -> Any:
    return await staff_call(client, token, f"/api/v1/conversations/{conv}/status",
                            {"status": status})


def channel(hub: Hub, name: str) -> RecordingAdapter:
    adapter = hub.adapters.get(name)
    assert isinstance(adapter, RecordingAdapter)
    return adapter


async def delivered(hub: Hub, name: str = "email") -> list[OutboundMessage]:
    await hub.jobs.drain()
    return channel(hub, name).sent


async def notices(hub: Hub, conv: int) -> list[Message]:
    async with hub.db.read() as session:
        return list(await session.scalars(select(Message).where(
            Message.conversation_id == conv, Message.direction == "outbound",
            Message.body.contains("/track/")).order_by(Message.id)))


@pytest.mark.parametrize(("language", "subject", "words"), [
    ("en", "Your request has been resolved", "How did we do?"),
    ("es", "Su solicitud ha sido resuelta", "¿Qué tal lo hemos hecho?"),
])
async def test_resolving_tells_the_citizen_in_their_language_with_both_links(
        client: TestClient, hub: Hub, language: str, subject: str, words: str) -> None:
    reference, conv = await request_of(client, hub, language)
    token = await staff_token(hub)
    resolved = await set_status(client, token, conv, "resolved")
    assert resolved["status"] == "resolved"
    notice = (await delivered(hub))[-1]
    assert notice.to == POTHOLE["email"] and subject in (notice.subject or "")
    assert f"{PUBLIC}/track/{reference}" in notice.body and words in notice.body
    found = SURVEY_RE.search(notice.body)
    assert found is not None and len(found.group(1)) >= 30
    async with hub.db.read() as session:
        survey = await session.scalar(select(Survey).where(Survey.conversation_id == conv))
    assert survey is not None and survey.token == found.group(1) and survey.channel == "email"
    # Once per change: resolving again changes nothing; closing after it is not news.
    await set_status(client, token, conv, "resolved")
    await set_status(client, token, conv, "closed")
    assert len(await notices(hub, conv)) == 1


async def test_closing_an_unresolved_request_tells_the_citizen_without_a_survey(
        client: TestClient, hub: Hub) -> None:
    reference, conv = await request_of(client, hub, "es")
    token = await staff_token(hub)
    await set_status(client, token, conv, "pending")  # not told: a reply asks the question
    await set_status(client, token, conv, "closed")
    (notice,) = await notices(hub, conv)
    assert "cerrada" in (notice.subject or "") and f"/track/{reference}" in notice.body
    assert "/survey/" not in notice.body


async def test_an_opted_out_citizen_gets_no_notice_and_the_resolve_works(
        client: TestClient, hub: Hub) -> None:
    _, conv = await request_of(client, hub, email="", phone="+14155550123")
    async with hub.db.transaction() as session:
        await session.execute(update(Identity).where(Identity.channel == "sms")
                              .values(opted_out=True))
    resolved = await set_status(client, await staff_token(hub), conv, "resolved")
    assert resolved["status"] == "resolved"
    assert await notices(hub, conv) == []
    assert not any("/track/" in m.body for m in await delivered(hub, "sms"))


async def test_spam_is_never_told(client: TestClient, hub: Hub) -> None:
    _, conv = await request_of(client, hub)
    async with hub.db.transaction() as session:
        await session.execute(update(Conversation).where(Conversation.id == conv)
                              .values(spam=True))
    await set_status(client, await staff_token(hub), conv, "resolved")
    assert await notices(hub, conv) == []


async def survey_link(client: TestClient, hub: Hub, language: str = "en") -> tuple[str, int]:
    _, conv = await request_of(client, hub, language)
    token = await staff_token(hub)
    await set_status(client, token, conv, "resolved")
    found = SURVEY_RE.search((await notices(hub, conv))[0].body)
    assert found is not None
    return found.group(0), conv


async def answer(client: TestClient, link: str, fields: dict[str, str]) -> Any:
    page = await client.get(link)
    assert page.status == 200
    return await client.post(link, data=multipart({**hidden(await page.text()), **fields}),
                             allow_redirects=False)


async def test_the_survey_answer_is_stored_once_and_shown_to_staff(client: TestClient,
                                                                    hub: Hub) -> None:
    link, conv = await survey_link(client, hub, "es")
    page = await client.get(link)
    html = await page.text()
    assert page.status == 200 and page.headers["X-Robots-Tag"] == "noindex, nofollow"
    assert '<html lang="es">' in html and "<legend" in html and "<fieldset" in html
    assert html.count('type="radio" ') == 5 and "Muy satisfecho" in html
    refused = await answer(client, link, {"comment": "sin nota"})
    assert refused.status == 400 and "Seleccione su grado de satisfacción" in await refused.text()
    sent = await answer(client, link, {"rating": "4", "comment": "Rápido <b>y</b> amable"})
    assert sent.status == 303 and sent.headers["Location"] == f"{link}?sent=1"
    thanks = await client.get(sent.headers["Location"])
    assert "Gracias por su respuesta" in await thanks.text()
    detail = await (await client.get(f"/api/v1/conversations/{conv}", headers={
        "Authorization": f"Bearer {await staff_token(hub, 'boss@city.example', 'Boss')}"})).json()
    assert detail["satisfaction"]["rating"] == 4
    assert detail["satisfaction"]["comment"] == "Rápido <b>y</b> amable"
    assert detail["satisfaction"]["answered_at"]
    again = await client.get(link)
    assert "Esta encuesta ya ha sido respondida" in await again.text()
    assert "<form" not in (await again.text()).split("<main", 1)[1]


async def test_a_second_answer_is_refused_kindly_and_a_wrong_token_is_a_polite_404(
        client: TestClient, hub: Hub) -> None:
    link, _ = await survey_link(client, hub)
    page = await client.get(link)
    tokens = hidden(await page.text())
    first = await client.post(link, data=multipart({**tokens, "rating": "2"}),
                              allow_redirects=False)
    assert first.status == 303
    second = await client.post(link, data=multipart({**tokens, "rating": "5"}),
                               allow_redirects=False)
    assert second.status == 409
    assert "This survey has already been answered" in await second.text()
    async with hub.db.read() as session:
        (survey,) = await session.scalars(select(Survey))
    assert (survey.rating, survey.answered_via) == (2, "web")
    wrong = await client.get("/survey/" + "x" * 32)
    assert wrong.status == 404 and "Page not found" in await wrong.text()
    forged = await client.post(link, data=multipart({"rating": "1"}), allow_redirects=False)
    assert forged.status == 403


async def test_a_conversation_of_carrier_keywords_alone_is_never_told(client: TestClient,
                                                                      hub: Hub) -> None:
    accepted = await hub.intake.accept(inbound(text="HELP", meta={"keyword": "help"}))
    await set_status(client, await staff_token(hub), accepted.conversation_id, "resolved")
    assert await notices(hub, accepted.conversation_id) == []
    told = await hub.intake.accept(inbound(sender="+14155550111", text="A fallen tree"))
    await set_status(client, await staff_token(hub, "b@city.example"), told.conversation_id,
                     "resolved")
    assert len(await notices(hub, told.conversation_id)) == 1  # the same path, with a request
