"""A small city hall for the workspace's tests: queue `roads` with an agent who has a password,
an outsider agent in `taxes`, an admin, and one conversation that arrived by email from a citizen whose
message is full of markup (script, onerror, a javascript: link, a remote image). The contact also
has an SMS number that opted out. The conversation's routing decision carries a trace.
"""

from __future__ import annotations

import asyncio
import functools
import re
from dataclasses import dataclass

from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from hub.app import Hub
from hub.auth import hash_password
from hub.model import OutboundMessage, SendResult, utcnow
from hub.staff import add_staff
from hub.storage.tables import Conversation, Identity, Queue, RoutingDecisionRow
from tests.support.adapter import RecordingAdapter, inbound

PASSWORD = "correct horse battery"
AGENT = "agent@city.example"
OUTSIDER = "outsider@city.example"
ADMIN = "admin@city.example"
REMOTE = "remote.invalid"
HOSTILE = (f'<script>alert("script")</script> <img src="http://{REMOTE}/pixel.png" '
           'onerror="alert(\'onerror\')"> <a href="javascript:alert(\'link\')">click me</a> '
           "The streetlight on Elm St is out.")
SUBJECT = 'Streetlight <img src=x onerror="alert(\'subject\')">'
TRACE = [{"rule": "lights-to-roads", "phase": "route", "source": "rules.toml:12",
          "matched": True,
          "clauses": [{"clause": "text.contains", "expected": ["streetlight"],
                       "value": "streetlight", "result": True}],
          "actions": {"queue": "roads"}},
         {"phase": "notify", "note": "not considered: a required keyword is absent",
          "rules_skipped": 2}]


@functools.cache
def password_hash() -> str:
    """PASSWORD's hash, made once: argon2 is slow on purpose."""
    return hash_password(PASSWORD)


@dataclass
class Desk:
    conv: int
    contact: int
    outsider_conv: int


@dataclass
class GatedAdapter(RecordingAdapter):
    """Holds each send until `gate` is set (when there is one): a reply stays `queued` until
    the test lets it go."""

    gate: asyncio.Event | None = None

    async def send(self, msg: OutboundMessage) -> SendResult:
        if self.gate is not None:
            await self.gate.wait()
        return await super().send(msg)


def adapters() -> list[RecordingAdapter]:
    return [GatedAdapter(name="email"), RecordingAdapter(name="sms")]


async def build_desk(hub: Hub) -> Desk:
    async with hub.db.transaction() as session:
        existing = set(await session.scalars(select(Queue.name)))  # the default queue, maybe
        session.add_all([Queue(name=name, title=name.title()) for name in ("roads", "taxes")
                         if name not in existing])
        await session.flush()
        for email, name, role, queues in ((AGENT, "Alex Agent", "agent", ["roads"]),
                                          (OUTSIDER, "Olga Outsider", "agent", ["taxes"]),
                                          (ADMIN, "Ada Admin", "admin", [])):
            staff = await add_staff(session, email, name=name, role=role, queues=queues)
            staff.password_hash = password_hash()
    mail = await hub.intake.accept(inbound("ana@example.org", HOSTILE, channel="email",
                                           subject=SUBJECT, sender_name="Ana Citizen"))
    other = await hub.intake.accept(inbound("+15550009999", "My tax bill is wrong"))
    async with hub.db.transaction() as session:
        conversation = await session.get_one(Conversation, mail.conversation_id)
        conversation.queue = "roads"
        await session.execute(update(Conversation).where(
            Conversation.id == other.conversation_id).values(queue="taxes"))
        session.add(Identity(contact_id=conversation.contact_id, channel="sms",
                             address="+15550001111", opted_out=True, opted_out_at=utcnow()))
        session.add(RoutingDecisionRow(conversation_id=conversation.id, rules_version="abc123",
                                       decision={"queue": "roads"}, trace=TRACE))
    return Desk(conv=mail.conversation_id, contact=conversation.contact_id,
                outsider_conv=other.conversation_id)


CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF_RE.search(html)
    assert found is not None, "no CSRF field on the page"
    return found.group(1)


async def sign_in(client: TestClient, email: str = AGENT, password: str = PASSWORD) -> str:
    """Signs `client` in; the CSRF token of its session."""
    page = await client.get("/staff/login")
    token = csrf_of(await page.text())
    response = await client.post("/staff/login", data={"email": email, "password": password,
                                                       "csrf": token}, allow_redirects=False)
    assert response.status == 303, await response.text()
    workspace = await client.get("/staff/")
    assert workspace.status == 200
    return csrf_of(await workspace.text())


MAIL_HTML = ('<p>Hello <b>team</b>, the lamp is out.</p><script>alert("html script")</script>'
             f'<img src="http://{REMOTE}/track.png" onerror="alert(\'html onerror\')" alt="tracker">'
             '<img src="cid:logo@city" alt="logo">')
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
                    "0000000d49444154789c6360000002000185d114090000000049454e44ae426082")


@dataclass
class Mail:
    conv: int
    message: int
    logo: int  # the inline image the HTML names by cid:
    photo: int  # an image attachment
    page: int  # an HTML attachment: never shown inline


async def add_html_mail(hub: Hub) -> Mail:
    """A second email from the desk's citizen (same contact), queue roads, with an HTML part
    full of markup, an inline image, an image and an HTML file attached."""
    from hub.model import InboundAttachment
    from hub.storage.tables import Attachment, Message

    files = (InboundAttachment("logo.png", "image/png", PNG, content_id="<logo@city>", inline=True),
             InboundAttachment("photo.png", "image/png", PNG),
             InboundAttachment("page.html", "text/html", b"<script>alert(1)</script>"))
    accepted = await hub.intake.accept(inbound(
        "ana@example.org", "Hello team, the lamp is out.", channel="email",
        subject="Lamp, with pictures", html=MAIL_HTML, attachments=files))
    async with hub.db.transaction() as session:
        await session.execute(update(Conversation).where(
            Conversation.id == accepted.conversation_id).values(queue="roads"))
        message = await session.scalar(select(Message.id).where(
            Message.conversation_id == accepted.conversation_id))
        ids = {a.filename: a.id for a in await session.scalars(
            select(Attachment).where(Attachment.message_id == message))}
    assert message is not None
    return Mail(accepted.conversation_id, message, ids["logo.png"], ids["photo.png"],
                ids["page.html"])
