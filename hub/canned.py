"""Canned responses: texts staff insert into a reply, for every queue or for one, with
placeholders filled from the conversation at hand.

A text is a Jinja template in a sandbox with a fixed set of placeholders (PLACEHOLDERS); one
naming anything else is refused when it is saved, so a typo is found by the supervisor who
wrote it, not by a citizen who reads "{{ refrence }}". Staff see the texts of every queue they
work and the shared ones; supervisors and admins manage them.
"""

from __future__ import annotations

from dataclasses import dataclass

from jinja2 import StrictUndefined, TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub import audit
from hub.model import utcnow
from hub.service import Conflict, Invalid, NotFound, conversation_for, visible_queues
from hub.storage.tables import CannedResponse, Contact, Queue, Staff

PLACEHOLDERS = {
    "citizen_name": "the citizen's name, or nothing when we do not know it",
    "reference": "the request's reference",
    "queue": "the conversation's queue",
    "subject": "the conversation's subject",
    "staff_name": "the name of the staff member who sends the reply",
}
_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


@dataclass(frozen=True, slots=True)
class CannedIn:
    name: str
    body: str
    queue: str | None = None


def check_body(body: str) -> None:
    """Invalid unless `body` is a template that names only known placeholders."""
    try:
        used = meta.find_undeclared_variables(_ENV.parse(body))
    except TemplateError as exc:
        raise Invalid(f"body: not a valid template: {exc}") from None
    unknown = sorted(used - set(PLACEHOLDERS))
    if unknown:
        raise Invalid(f"body: unknown placeholder(s) {', '.join(unknown)}; known: "
                      f"{', '.join(sorted(PLACEHOLDERS))}")
    try:  # what the sandbox refuses (private attributes, ...) fails now, not in a reply
        _ENV.from_string(body).render(dict.fromkeys(PLACEHOLDERS, "x"))
    except TemplateError as exc:
        raise Invalid(f"body: cannot be filled in: {exc}") from None


async def listed(session: AsyncSession, staff: Staff, *, queue: str | None = None,
                 text: str | None = None) -> list[CannedResponse]:
    """The texts `staff` may use: shared ones and those of their queues (or of `queue`)."""
    query = select(CannedResponse).order_by(CannedResponse.name, CannedResponse.id)
    visible = await visible_queues(session, staff)
    if visible is not None:
        query = query.where(or_(CannedResponse.queue.is_(None),
                                CannedResponse.queue.in_(sorted(visible))))
    if queue is not None:
        query = query.where(or_(CannedResponse.queue.is_(None), CannedResponse.queue == queue))
    if text:
        pattern = f"%{text.lower()}%"
        query = query.where(or_(func.lower(CannedResponse.name).like(pattern),
                                func.lower(CannedResponse.body).like(pattern)))
    return list(await session.scalars(query))


async def create(session: AsyncSession, actor: Staff, data: CannedIn) -> CannedResponse:
    check_body(data.body)
    if data.queue is not None and await session.scalar(
            select(Queue.id).where(Queue.name == data.queue)) is None:
        raise Invalid(f"queue: no queue named {data.queue!r}")
    name = data.name.strip()
    same = select(CannedResponse.id).where(
        func.lower(CannedResponse.name) == name.lower(),
        CannedResponse.queue.is_(None) if data.queue is None else CannedResponse.queue == data.queue)
    if await session.scalar(same) is not None:
        scope = f"queue {data.queue}" if data.queue else "all queues"
        raise Conflict(f"name: a canned response {name!r} exists for {scope}")
    canned = CannedResponse(name=name, body=data.body, queue=data.queue,
                            created_by=actor.email, created_at=utcnow())
    session.add(canned)
    await session.flush()
    audit.record(session, actor.email, "canned.create", "canned", canned.id, name=canned.name,
                 queue=canned.queue)
    return canned


async def delete(session: AsyncSession, actor: Staff, canned_id: int) -> None:
    canned = await session.get(CannedResponse, canned_id)
    if canned is None:
        raise NotFound()
    await session.delete(canned)
    audit.record(session, actor.email, "canned.delete", "canned", canned_id, name=canned.name)


async def rendered(session: AsyncSession, staff: Staff, conversation_id: int,
                   canned_id: int) -> str:
    """The text with the conversation's values in place, for the reply box."""
    conversation = await conversation_for(session, staff, conversation_id)
    usable = await listed(session, staff, queue=conversation.queue)
    canned = next((c for c in usable if c.id == canned_id), None)
    if canned is None:
        raise NotFound()
    contact = await session.get(Contact, conversation.contact_id)
    values = {"citizen_name": (contact.name if contact else None) or "",
              "reference": conversation.reference, "queue": conversation.queue or "",
              "subject": conversation.subject or "", "staff_name": staff.name}
    return _ENV.from_string(canned.body).render(values)
