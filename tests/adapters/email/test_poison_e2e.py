"""Poison mail against the real hub on both databases: twenty of each hostile kind over real SMTP,
then an ordinary mail, which must become a conversation while the hub's own spool worker runs.
Every poison mail ends stored (cut, cleaned, flagged) or set aside with its reason, and what was
set aside or flagged shows in /metrics and in `hub spool list`'s source."""

from __future__ import annotations

import asyncio
from email.utils import formatdate

import aiosmtplib
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select
from sqlalchemy.orm import undefer

from hub.storage.tables import Attachment, Conversation, Message, SpoolEntry
from hub.web.app import create_app

from .conftest import CITIZEN, HELP, LiveHub, citizen_mail

EACH = 20
PDF = b"%PDF-1.4\n%%EOF\n"


def _mail(n: int, *, headers: dict[str, str] | None = None, body: str = "",
          raw_headers: bytes = b"", parts: bytes = b"", boundary: str = "") -> bytes:
    fields = {"From": f"Citizen {n} <citizen{n}@example.org>", "To": HELP,
              "Subject": f"Poison {n}", "Date": formatdate(usegmt=True),
              "Message-ID": f"<poison-{n}@example.org>", "MIME-Version": "1.0"}
    fields.update(headers or {})
    if boundary:
        fields["Content-Type"] = f'multipart/mixed; boundary="{boundary}"'
    else:
        fields.setdefault("Content-Type", "text/plain; charset=utf-8")
    head = b"".join(f"{k}: {v}\r\n".encode("utf-8", "surrogateescape") for k, v in fields.items())
    content = parts or (body or f"Body of poison mail {n}.").encode("utf-8", "surrogateescape")
    return head + raw_headers + b"\r\n" + content + b"\r\n"


def _with_attachment(n: int, content_type: bytes, filename: bytes) -> bytes:
    boundary = f"b{n}"
    parts = (f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
             f"See the attached file {n}.\r\n--{boundary}\r\n").encode()
    parts += (b"Content-Type: " + content_type + b"\r\nContent-Disposition: attachment; "
              b'filename="' + filename + b'"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
              b"JVBERi0xLjQKJSVFT0YK\r\n" + f"--{boundary}--\r\n".encode())
    return _mail(n, parts=parts, boundary=boundary)


def poison(kind: str, n: int) -> bytes:
    if kind == "long_message_id":  # shares its first 600 characters with the others
        return _mail(n, headers={"Message-ID": f"<{'m' * 620}.{n}@evil.example>"})
    if kind == "long_from_address":
        return _mail(n, headers={"From": f"<{'a' * 330}{n}@evil.example>"})
    if kind == "long_subject":  # our acknowledgment's "Re: ... [#REF]" makes it longer still
        return _mail(n, headers={"Subject": f"{'S' * 990} {n}"})
    if kind == "nul_in_attachment_type":
        return _with_attachment(n, b"application/pdf\x00; x=1", f"scan{n}.pdf".encode())
    if kind == "long_display_name":
        return _mail(n, headers={"From": f"{'N' * 400} {n} <name{n}@example.org>"})
    if kind == "long_attachment_name":
        return _with_attachment(n, b"application/pdf", b"f" * 400 + f"{n}.pdf".encode())
    if kind == "broken_encodings":
        return _mail(n, headers={"Subject": "=?utf-8?B?!!notbase64!!?= =?x-unknown?Q?caf=E9?=",
                                 "Content-Type": "text/plain; charset=x-no-such-charset",
                                 "Content-Transfer-Encoding": "base64"},
                     raw_headers=b"X-Raw: caf\xe9 \xff\xfe\r\n", body="!!! not base64 %%%")
    if kind == "nul_in_every_header":
        return _mail(n, headers={
            "From": f"Nul\x00Name <nul{n}@example.org>", "Subject": f"Sub\x00ject {n}",
            "Message-ID": f"<nul\x00{n}@example.org>", "References": "<a\x00b@example.org>",
            "In-Reply-To": "<c\x00d@example.org>", "Content-Language": "e\x00s",
            "Reply-To": f"r\x00{n}@example.org"}, body=f"text with a nul \x00 inside {n}")
    if kind == "long_language":
        return _mail(n, headers={"Content-Language": "x" * 60})
    raise AssertionError(kind)


KINDS = ("long_message_id", "long_from_address", "long_subject", "nul_in_attachment_type",
         "long_display_name", "long_attachment_name", "broken_encodings", "nul_in_every_header",
         "long_language")


async def _conversation_of(live: LiveHub, message_id: str) -> int | None:
    async with live.hub.db.read() as session:
        return await session.scalar(select(Message.conversation_id).where(
            Message.thread_key == message_id))


async def test_poison_mail_of_every_kind_never_holds_up_an_ordinary_mail(live: LiveHub) -> None:
    sent = 0
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=live.port, timeout=60) as client:
        for kind in KINDS:
            for n in range(EACH):
                sender = f"poison{n}@example.org" if kind != "long_from_address" else ""
                _errors, response = await client.sendmail(sender or CITIZEN, [HELP],
                                                          poison(kind, sent + n))
                assert response.startswith("2.0.0 OK"), (kind, response)
            sent += EACH
        raw, message_id = citizen_mail("After the poison: a fallen tree on Elm St.")
        await client.sendmail(CITIZEN, [HELP], raw)

    # The hub's own worker (no drain): the ordinary mail becomes a conversation. The deadline
    # only stops a hung test; it is not a speed requirement.
    for _ in range(1200):
        if await _conversation_of(live, message_id) is not None:
            break
        await asyncio.sleep(0.05)
    assert await _conversation_of(live, message_id) is not None

    await live.hub.spool_worker.drain()
    async with live.hub.db.read() as session:
        items = list(await session.scalars(select(SpoolEntry).order_by(SpoolEntry.id)))
        stored = list(await session.scalars(select(Message).options(
            undefer(Message.raw)).where(Message.direction == "inbound")))
        attachments = list(await session.scalars(select(Attachment)))
        subjects = list(await session.scalars(select(Conversation.subject)))
        outbound = list(await session.scalars(select(Message.subject).where(
            Message.direction == "outbound")))
    assert len(items) == len(KINDS) * EACH + 1
    for item in items:  # stored, or set aside with its reason: never silently pending
        assert item.state == "done" or (item.attempts > 0 and item.last_error), item.id
    assert all(item.state == "done" for item in items), [i.last_error for i in items]
    assert len(stored) == len(KINDS) * EACH + 1 and all(m.raw for m in stored)
    # A shared 600-character prefix did not make twenty Message-IDs one.
    cut = {m.thread_key for m in stored if "cut_to_fit" in m.flags}
    assert len(cut) >= 3 * EACH  # long ids, From addresses, display names: stored and flagged
    long_ids = [m for m in stored if (m.thread_key or "").startswith("m" * 100)]
    assert len(long_ids) == EACH and len({m.provider_id for m in long_ids}) == EACH
    assert all(len(m.provider_id or "") <= 512 for m in stored)
    assert all("\x00" not in (m.subject or "") + m.body + (m.sender or "") for m in stored)
    assert all(len(s or "") <= 998 for s in subjects + outbound)
    assert len(attachments) >= 2 * EACH
    assert all("\x00" not in a.content_type + a.filename for a in attachments)
    assert all(len(a.filename) <= 255 and len(a.content_type) <= 255 for a in attachments)

    async with TestClient(TestServer(create_app(live.hub))) as http:
        metrics = await (await http.get("/metrics")).text()
    assert 'hub_spool_items{state="done"} ' + f"{len(items)}.0" in metrics
    assert 'hub_spool_items{state="pending"} 0.0' in metrics


def nested(depth: int, n: int) -> bytes:
    """A mail of `depth` nested multipart levels (about 66 bytes a level)."""
    opening = b"".join(f'--l{i}\r\nContent-Type: multipart/mixed; boundary="l{i + 1}"\r\n\r\n'
                       .encode() for i in range(depth))
    closing = b"".join(f"--l{i}--\r\n".encode() for i in reversed(range(depth + 1)))
    return _mail(n, parts=opening + b"--l" + str(depth).encode() + b"\r\nContent-Type: "
                 b"text/plain\r\n\r\ndeep inside\r\n" + closing, boundary="l0")


async def test_nested_mime_is_kept_raw_and_flagged_while_others_are_answered(
        live: LiveHub) -> None:
    async def send_nested(n: int) -> str:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=live.port, timeout=60) as client:
            return (await client.sendmail(CITIZEN, [HELP], nested(1000, n)))[1]

    async def ordinary() -> list[str]:
        answers = []
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=live.port, timeout=60) as client:
            for n in range(10):
                raw, _ = citizen_mail(f"ordinary mail {n}", from_=f"Other <other{n}@example.org>")
                answers.append((await client.sendmail(f"other{n}@example.org", [HELP], raw))[1])
        return answers

    results = await asyncio.gather(*(send_nested(n) for n in range(3)), ordinary())
    assert all(r.startswith("2.0.0 OK") for r in results[:3])
    assert all(r.startswith("2.0.0 OK") for r in results[3])  # type: ignore[union-attr]
    await live.hub.spool_worker.drain()
    async with live.hub.db.read() as session:
        stored = list(await session.scalars(select(Message).where(
            Message.direction == "inbound").options(undefer(Message.raw))))
    deep = [m for m in stored if m.thread_key and m.thread_key.startswith("poison-")]
    assert len(deep) == 3 and all("malformed" in m.flags and m.raw for m in deep)
    assert all("mime_too_deep" in m.flags for m in deep), [m.flags for m in deep]
    assert len(stored) == 13
