"""A small city hall for API tests: queues, staff of every role with tokens, and conversations.

Queue `roads` holds the conversation under test (with an attachment); queue `taxes` belongs to the
outsider agent. One contact writes to both queues, so filtered lists can be checked. With
`set_aside`, there is also a failed inbound spool item and a dead reply (in `taxes`) in the outbox.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import func, select, update

from hub.app import Hub
from hub.auth import create_token
from hub.model import InboundAttachment, OutboxState, ThreadHints, utcnow
from hub.outbound import outbox_id_for, queue_outbound
from hub.staff import add_staff
from hub.storage.tables import (
    ApiToken,
    Attachment,
    AuditEntry,
    CannedResponse,
    Conversation,
    Message,
    OutboxItem,
    Queue,
    QueueMember,
    SpoolEntry,
    Staff,
)
from tests.support.adapter import inbound

PHOTO = b"\xff\xd8\xff\xe0 not really a jpeg <script>alert(1)</script>"
RAW_MAIL = b"From: a@b.example\r\nSubject: \x1b[2Jcleared\r\n\r\nMy bin was not emptied.\r\n"
SPOOL_ERROR = "ValueError: unparseable header"
DEAD_ERROR = "recipient rejected"


@dataclass
class World:
    hub: Hub
    tokens: dict[str, str] = field(default_factory=dict)  # who -> bearer token
    emails: dict[str, str] = field(default_factory=dict)
    conv: int = 0  # in roads, contact `citizen`, one attachment
    conv_contact: int = 0
    attachment: int = 0
    taxes_conv: int = 0  # in taxes, contact `both`
    roads_conv_of_both: int = 0  # in roads, contact `both`
    both_contact: int = 0
    spool: int = 0  # set_aside only: a failed spool item (email)
    outbox: int = 0  # set_aside only: a dead outbox item, a reply in taxes
    spam_conv: int = 0  # set_aside only: a conversation the rules marked spam
    canned: int = 0  # a canned response for queue roads


STAFF = {  # who -> (role, queues)
    "agent": ("agent", ["roads"]),
    "outsider": ("agent", ["taxes"]),
    "supervisor": ("supervisor", []),
    "admin": ("admin", []),
    "revoked": ("agent", ["roads"]),
}


async def build_world(hub: Hub, *, set_aside: bool = False) -> World:
    world = World(hub)
    async with hub.db.transaction() as session:
        session.add_all([Queue(name="roads", title="Roads"), Queue(name="taxes", title="Taxes")])
        await session.flush()
        for who, (role, queues) in STAFF.items():
            staff = await add_staff(session, f"{who}@city.example", name=who.title(),
                                    role=role, queues=queues)
            world.tokens[who] = await create_token(session, staff)
            world.emails[who] = staff.email
        await session.execute(update(ApiToken).where(ApiToken.staff_id == staff.id)
                              .values(revoked_at=utcnow()))
        canned = CannedResponse(name="On its way", body="Hello {{ citizen_name }}, a crew is "
                                "on its way.", queue="roads", created_by="supervisor@city.example")
        session.add(canned)
        await session.flush()
        world.canned = canned.id
    photo = InboundAttachment("pot hole.jpg", "image/jpeg", PHOTO)
    first = await hub.intake.accept(inbound("+15550000001", "Pothole on Main St",
                                            attachments=(photo,)))
    world.conv, world.conv_contact = first.conversation_id, await _contact_of(hub, first)
    taxes = await hub.intake.accept(inbound("+15550000002", "Question about my tax bill"))
    world.taxes_conv, world.both_contact = taxes.conversation_id, await _contact_of(hub, taxes)
    roads = await hub.intake.accept(inbound("+15550000002", "Also a broken streetlight",
                                            channel="sms", thread=ThreadHints()))
    world.roads_conv_of_both = roads.conversation_id
    await move(hub, world.conv, "roads")
    await move(hub, world.roads_conv_of_both, "roads")
    await move(hub, world.taxes_conv, "taxes")
    async with hub.db.read() as session:
        world.attachment = int(await session.scalar(select(func.min(Attachment.id))) or 0)
    if set_aside:
        world.spool, world.outbox = await add_set_aside(hub, world.taxes_conv)
        world.spam_conv = await add_spam(hub)
    return world


async def add_spam(hub: Hub) -> int:
    """A conversation the rules marked spam (no queue), as the intake leaves it."""
    accepted = await hub.intake.accept(inbound("+15550006666", "casino bonus for you"))
    async with hub.db.transaction() as session:
        await session.execute(update(Conversation).where(
            Conversation.id == accepted.conversation_id).values(spam=True, queue=None))
    return accepted.conversation_id


async def add_set_aside(hub: Hub, conversation_id: int) -> tuple[int, int]:
    """A spool item the worker gave up on and a reply whose delivery died: (spool id, outbox id)."""
    async with hub.db.transaction() as session:
        entry = SpoolEntry(channel="email", dedupe_key="<bin@b.example>|a@b.example",
                           envelope={"mail_from": "a@b.example"}, payload=RAW_MAIL,
                           state="failed", attempts=5, last_error=SPOOL_ERROR,
                           received_at=utcnow())
        session.add(entry)
        conversation = await session.get_one(Conversation, conversation_id)
        message = await queue_outbound(session, conversation, "Your bill is corrected.")
        outbox_id = await outbox_id_for(session, message.id)
        await session.execute(update(OutboxItem).where(OutboxItem.id == outbox_id).values(
            state=OutboxState.DEAD.value, attempts=3, last_error=DEAD_ERROR))
        await session.execute(update(Message).where(Message.id == message.id).values(
            delivery_status="failed", delivery_error=DEAD_ERROR))
        await session.flush()
    return entry.id, outbox_id


async def _contact_of(hub: Hub, accepted: Any) -> int:
    async with hub.db.read() as session:
        conversation = await session.get_one(Conversation, accepted.conversation_id)
        return conversation.contact_id


async def move(hub: Hub, conversation_id: int, queue: str) -> None:
    async with hub.db.transaction() as session:
        await session.execute(update(Conversation).where(Conversation.id == conversation_id)
                              .values(queue=queue))


async def call(client: TestClient, method: str, path: str, token: str | None = None,
               body: Any = None, raw: bytes | None = None) -> tuple[int, Any, dict[str, str]]:
    """(status, parsed JSON or raw bytes, headers)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if raw is not None:
        headers["Content-Type"] = "application/json"
    response = await client.request(method, path, headers=headers, json=body, data=raw)
    data = await response.read()
    answer: Any = data
    if response.content_type == "application/json" and data:
        answer = json.loads(data)
    return response.status, answer, dict(response.headers)


async def snapshot(hub: Hub) -> dict[str, Any]:
    """Everything an API action could change: compared before and after a refused call."""
    async with hub.db.read() as session:
        conversations = [(c.id, c.queue, c.status, c.assignee_id, c.resolved_at, c.tags,
                          c.last_message_at) for c in await session.scalars(
                              select(Conversation).order_by(Conversation.id))]
        counts = {}
        for model in (Message, OutboxItem, AuditEntry, Staff, QueueMember, CannedResponse):
            counts[model.__name__] = await session.scalar(select(func.count()).select_from(model))
    return {"conversations": conversations, "counts": counts}
