"""The resolution notice and the satisfaction survey on SMS, with the real hub and the Twilio
stand-in: staff resolve through the API -> the citizen gets the short notice with the tracking
and survey links; a reply of just "5" answers the survey (stored as a message, the request
stays resolved, nothing is routed); a second digit changes nothing; words reopen it."""

from __future__ import annotations

from sqlalchemy import select

from hub.storage.tables import Message, Survey
from tests.adapters.sms.conftest import PUBLIC_URL, SmsHub, conversations, messages


async def resolve(sms: SmsHub, conversation_id: int) -> None:
    answer = await sms.client.post(f"/api/v1/conversations/{conversation_id}/status",
                                   json={"status": "resolved"}, headers=sms.headers)
    assert answer.status == 200, await answer.text()


async def test_a_texted_digit_answers_the_survey_of_the_resolution_notice(sms: SmsHub) -> None:
    await sms.text("The streetlight on Oak Ave is out")
    await sms.work_spool()
    (conversation,) = await conversations(sms.hub)
    await resolve(sms, conversation.id)
    await sms.deliver()
    (sent,) = sms.api.requests_to("Messages.json", "POST")
    body = sent.form["Body"]
    assert body.startswith("City Hall: your request") and "Reply 1 (bad) to 5" in body
    assert f"{PUBLIC_URL}/track/{conversation.reference}" in body
    async with sms.hub.db.read() as session:
        (survey,) = await session.scalars(select(Survey))
    assert f"{PUBLIC_URL}/survey/{survey.token}" in body and survey.channel == "sms"

    await sms.text(" 5 ")
    await sms.text("4")  # a second digit: kept, refused, still no reason to reopen
    await sms.work_spool()
    async with sms.hub.db.read() as session:
        survey = await session.get_one(Survey, survey.id, populate_existing=True)
        rules = list(await session.scalars(select(Message.thread_rule).where(
            Message.direction == "inbound").order_by(Message.id)))
    assert (survey.rating, survey.answered_via, survey.comment) == (5, "sms", None)
    assert rules[1:] == ["survey_answer", "survey_answer"]
    (after,) = await conversations(sms.hub)
    assert after.status == "resolved" and after.queue == conversation.queue
    assert len(await messages(sms.hub, "outbound")) == 1  # nothing answered the digits

    await sms.text("It went out again tonight")  # words: the request is reopened as before
    await sms.work_spool()
    (reopened,) = await conversations(sms.hub)
    assert reopened.status == "open"
