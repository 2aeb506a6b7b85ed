"""The satisfaction survey: one per conversation (the `surveys` table), made when the
resolution notice carrying its link is queued (hub.notices), answered once, on the page
`/survey/{token}` (hub.web.citizen.survey) or, on a phone channel, by a reply that is just a
digit 1-5 within `[hub] survey_days` of the notice (`ReplyAnswers`, asked by the intake).

An answer is stored on the survey row (rating, comment, answered_at); a second one is refused
(`answer` returns False), whichever way each came.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hub.model import ConversationStatus, InboundMessage, utcnow
from hub.storage.tables import Conversation, Survey

RATINGS = range(1, 6)
COMMENT_MAX = 2000
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{20,64}$")
WEB = "web"  # answered_via for the page


async def survey_of(session: AsyncSession, conversation_id: int) -> Survey | None:
    found: Survey | None = await session.scalar(
        select(Survey).where(Survey.conversation_id == conversation_id))
    return found


async def by_token(session: AsyncSession, token: str) -> Survey | None:
    if not TOKEN_RE.match(token):
        return None  # not one of ours: no query
    found: Survey | None = await session.scalar(select(Survey).where(Survey.token == token))
    return found


def new_token() -> str:
    return secrets.token_urlsafe(24)


def sent(session: AsyncSession, conversation: Conversation, survey: Survey | None, token: str,
         channel: str) -> None:
    """Record that a resolution notice with `token`'s link went out on `channel` just now: the
    survey is made on the first, and each later one restarts the window for a digit reply."""
    if survey is None:
        session.add(Survey(conversation_id=conversation.id, token=token, channel=channel,
                           sent_at=utcnow()))
    else:
        survey.channel, survey.sent_at = channel, utcnow()


async def answer(session: AsyncSession, survey_id: int, rating: int, comment: str | None,
                 via: str) -> bool:
    """Store the answer unless there is one: one conditional UPDATE, so two answers at once
    cannot both win. False: it was answered already."""
    if rating not in RATINGS:
        raise ValueError(f"a rating is 1 to 5, not {rating}")
    done = await session.execute(
        update(Survey).where(Survey.id == survey_id, Survey.answered_at.is_(None))
        .values(rating=rating, comment=(comment or None), answered_at=utcnow(),
                answered_via=via))
    return bool(getattr(done, "rowcount", 0))


def digit(text: str) -> int | None:
    """The rating a reply gives, when it is just a digit 1-5 (spaces and a full stop aside)."""
    cleaned = text.strip().rstrip(".").strip()
    return int(cleaned) if len(cleaned) == 1 and cleaned in "12345" else None


@dataclass(frozen=True, slots=True)
class ReplyAnswers:
    """Which replies answer a survey: on a phone channel (`channels`: SMS, Telegram, where a
    link is a bother), a digit alone, to a resolved conversation whose notice went out on that
    channel less than `window` ago. The first one is the answer."""

    channels: frozenset[str]
    window: timedelta

    async def take(self, session: AsyncSession, conversation: Conversation,
                   msg: InboundMessage) -> bool:
        """Store `msg` as the survey's answer if it is one; True when it was."""
        rating = digit(msg.text or "")
        if (rating is None or msg.channel not in self.channels
                or conversation.status != ConversationStatus.RESOLVED.value):
            return False
        survey = await survey_of(session, conversation.id)
        if survey is None or survey.channel != msg.channel:
            return False
        if msg.received_at - survey.sent_at > self.window:
            return False
        # A second digit is refused, quietly: still an answer, not a reason to reopen.
        await answer(session, survey.id, rating, None, msg.channel)
        return True
