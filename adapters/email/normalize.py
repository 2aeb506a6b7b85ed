"""Raw RFC 5322 bytes -> one `InboundMessage`; never raises.

This module owns the mapping from a mail to the hub's vocabulary: sender identity, recipient
(and the inbox it names), dedupe key, thread hints (Message-ID references, our plus-address
reply token, the `[#REF]` subject reference), new/full/HTML text, capped attachments, the
automatic-mail verdict and delivery reports. Any mail, however broken, becomes a message: when
even the fallback parser fails, the raw bytes are kept with the flag "malformed", so one
poisonous mail never blocks the ones after it.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email import errors as email_errors
from email import policy
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from typing import Any

from hub.model import InboundAttachment, InboundMessage, ThreadHints, utcnow
from hub.tokens import REFERENCE_RE, find_tokens, verify_reply_token

from .body import clean, ctype_of, decode_part, html_to_text, maintype, split_reply
from .loops import automatic_reasons
from .status import parse_delivery_report

log = logging.getLogger(__name__)

CHANNEL = "email"
UNKNOWN_SENDER = "unknown@invalid"
MAX_REFS = 50
_MSGID_RE = re.compile(r"<([^<>\s]+)>")
# Defects after which the structure we report is a guess: flag the message for staff.
_SEVERE_DEFECTS = (
    email_errors.StartBoundaryNotFoundDefect,
    email_errors.MultipartInvariantViolationDefect,
    email_errors.NoBoundaryInMultipartDefect,
    email_errors.MissingHeaderBodySeparatorDefect,
    email_errors.FirstHeaderLineIsContinuationDefect,
    email_errors.MisplacedEnvelopeHeaderDefect,
)


@dataclass(frozen=True, slots=True)
class EmailLimits:
    """What the parser keeps; defaults match `[smtp]` in config."""

    max_attachment_bytes: int = 10_485_760
    max_attachments: int = 50
    domains: tuple[str, ...] = ()  # our mail domains: which RCPT is "the" recipient
    inboxes: dict[str, str] = field(default_factory=dict)  # address -> default queue

    @classmethod
    def from_settings(cls, smtp: Any) -> EmailLimits:
        return cls(max_attachment_bytes=smtp.max_attachment_bytes,
                   max_attachments=smtp.max_attachments,
                   domains=tuple(d.lower() for d in smtp.domains),
                   inboxes={k.lower(): v for k, v in dict(smtp.inboxes).items()})


DEFAULT_LIMITS = EmailLimits()


def parse_email(
    raw: bytes,
    *,
    mail_from: str | None = None,
    rcpt_to: Sequence[str] = (),
    limits: EmailLimits = DEFAULT_LIMITS,
    reply_secret: bytes | None = None,
    received_at: datetime | None = None,
) -> InboundMessage:
    """Normalise one mail. `mail_from`/`rcpt_to` are the SMTP envelope (None/() for a file);
    `received_at` is when the SMTP server took it (default: now).

    With `reply_secret`, only reply tokens that verify are passed on as hints (the intake
    verifies again; this just prefers a genuine token over a token-shaped string).
    """
    when = received_at or utcnow()
    try:
        return _Parsed(raw, mail_from, rcpt_to, limits, reply_secret).message(when)
    except Exception:
        # The last line of defence: a bug or a pathological mail still becomes a message.
        log.exception("email could not be normalised; storing it raw and flagged")
        return _raw_only(raw, mail_from, rcpt_to, limits, when)


def spool_key(raw: bytes) -> str:
    """The key that recognises a resend before the mail is parsed: the hash of its bytes.

    A mailer retrying after a 451 sends the very same bytes. Anything looser (Message-ID alone)
    could take a different mail for a resend before we read it; the intake's dedupe on the
    parsed Message-ID and From catches the resends that arrive with different bytes.
    """
    return _raw_key(raw)


def _raw_only(raw: bytes, mail_from: str | None, rcpt_to: Sequence[str],
              limits: EmailLimits, received_at: datetime) -> InboundMessage:
    sender = _valid_address(mail_from or "") or UNKNOWN_SENDER
    recipient, _ = _pick_recipient(rcpt_to, limits.domains)
    text = clean(raw[:100_000].decode("utf-8", "replace")) or ""
    return InboundMessage(
        channel=CHANNEL, provider_id=_raw_key(raw), sender=sender, text=text, full_text=text,
        recipient=recipient, raw=raw, automatic=mail_from == "", flags=("malformed",),
        received_at=received_at,
        meta={"mail_from": mail_from, "rcpt_to": list(rcpt_to), "defects": ["unparseable"]},
    )


def _load(raw: bytes) -> tuple[Message, list[str]]:
    """policy.default first (decoded headers, get_body); compat32 when it gives up."""
    try:
        return BytesParser(policy=policy.default).parsebytes(raw), []
    except Exception:
        return BytesParser(policy=policy.compat32).parsebytes(raw), ["parsed with compat32"]


class _Parsed:
    """One parse: holds the message tree while the fields are read from it."""

    def __init__(self, raw: bytes, mail_from: str | None, rcpt_to: Sequence[str],
                 limits: EmailLimits, reply_secret: bytes | None) -> None:
        self.raw = raw
        self.mail_from = mail_from
        self.rcpt_to = [r.strip() for r in rcpt_to]
        self.limits = limits
        self.secret = reply_secret
        self.msg, self.notes = _load(raw)
        self.flags: list[str] = []
        self.meta: dict[str, Any] = {}
        self._headers: dict[str, str | None] = {}

    # -- headers ---------------------------------------------------------------------------

    def header(self, name: str) -> str | None:
        """A decoded header value, tolerant of headers the policy cannot parse (memoised:
        policy.default parses the header again on every access)."""
        key = name.lower()
        if key not in self._headers:
            self._headers[key] = self._read_header(name)
        return self._headers[key]

    def _read_header(self, name: str) -> str | None:
        try:
            value = self.msg.get(name)
            return None if value is None else clean(str(value))
        except Exception:
            raw = next((v for k, v in self.msg.raw_items() if k.lower() == name.lower()), None)
            return None if raw is None else clean(_decode_raw_header(str(raw)))

    def _addresses(self, name: str) -> list[tuple[str, str]]:
        try:
            addresses = getattr(self.msg.get(name), "addresses", None)
            if addresses is not None:
                return [(a.display_name, a.addr_spec) for a in addresses]
        except Exception:  # policy.default gave up on this header: the lenient parser below
            addresses = None
        return getaddresses([self.header(name) or ""])

    # -- the message -------------------------------------------------------------------------

    def message(self, received_at: datetime) -> InboundMessage:
        sender_name, sender = self._sender()
        message_id = _bare_id(self.header("Message-ID") or "")
        subject = self.header("Subject")
        recipient, plus_tokens = self._recipient()
        refs = self._refs()
        full_text, html = self._bodies()
        text = split_reply(full_text)[0] if full_text else ""
        attachments = self._attachments()
        automatic = self._automatic(sender, subject)
        self._note_defects()
        self.meta.update(self._envelope_meta(message_id, recipient))
        return InboundMessage(
            channel=CHANNEL,
            provider_id=f"{message_id}|{sender}" if message_id else _raw_key(self.raw),
            sender=sender,
            sender_name=sender_name or None,
            recipient=recipient,
            subject=subject,
            text=text,
            full_text=full_text or None,
            html=html,
            attachments=attachments,
            thread=ThreadHints(refs=refs, reply_token=self._token(plus_tokens, refs),
                               reference=_reference(subject)),
            thread_key=message_id or None,
            received_at=received_at,
            raw=self.raw,
            automatic=automatic,
            flags=tuple(dict.fromkeys(self.flags)),
            language=self._language(),
            meta=self.meta,
        )

    def _sender(self) -> tuple[str, str]:
        for name in ("From", "Sender", "Reply-To"):
            for display, address in self._addresses(name):
                valid = _valid_address(address)
                if valid:
                    return clean(display) or "", valid
        envelope = _valid_address(self.mail_from or "")
        if envelope:
            return "", envelope
        self.flags.append("no_sender")
        return "", UNKNOWN_SENDER

    def _recipient(self) -> tuple[str | None, list[str]]:
        candidates = list(self.rcpt_to)
        if not candidates:  # a file, not an SMTP delivery: the headers say where it went
            for name in ("Delivered-To", "X-Original-To", "To", "Cc"):
                candidates += [a for _, a in self._addresses(name) if a]
        return _pick_recipient(candidates, self.limits.domains)

    def _refs(self) -> tuple[str, ...]:
        in_reply_to = _MSGID_RE.findall(self.header("In-Reply-To") or "")
        references = _MSGID_RE.findall(self.header("References") or "")
        # The direct parent first, then the thread newest to oldest: the intake stops at the
        # first id it knows, and the nearest one is the right conversation.
        ordered = [*in_reply_to, *reversed(references)]
        return tuple(dict.fromkeys(clean(r) or "" for r in ordered if r))[:MAX_REFS]

    def _token(self, plus_tokens: list[str], refs: tuple[str, ...]) -> str | None:
        candidates = plus_tokens + [t for ref in refs for t in find_tokens(ref.split("@")[0])]
        if self.secret is not None:
            candidates = [t for t in candidates if verify_reply_token(t, self.secret) is not None]
        return candidates[0] if candidates else None

    def _language(self) -> str | None:
        value = (self.header("Content-Language") or "").split(",")[0].strip().lower()
        primary = value.split("-")[0]
        return primary if len(primary) == 2 and primary.isalpha() else None

    # -- bodies and attachments --------------------------------------------------------------

    def _bodies(self) -> tuple[str, str | None]:
        plain: list[str] = []
        html: list[str] = []
        for part in _body_parts(self.msg):
            target = html if ctype_of(part) == "text/html" else plain
            target.append(decode_part(part))
        html_text = "\n".join(html) or None
        full_text = "\n".join(plain).strip()
        if not full_text and html_text:
            full_text = html_to_text(html_text)
            self.flags.append("text_from_html")
        return full_text, html_text

    def _attachments(self) -> tuple[InboundAttachment, ...]:
        kept: list[InboundAttachment] = []
        dropped: list[dict[str, Any]] = []
        for index, part in enumerate(_attachment_parts(self.msg), start=1):
            attachment = _attachment(part, index)
            reason = None
            if len(attachment.data) > self.limits.max_attachment_bytes:
                reason = "attachment_too_large"
            elif len(kept) >= self.limits.max_attachments:
                reason = "too_many_attachments"
            if reason:
                self.flags.append(reason)
                dropped.append({"filename": attachment.filename, "size": len(attachment.data),
                                "content_type": attachment.content_type, "reason": reason})
            else:
                kept.append(attachment)
        if dropped:
            self.meta["dropped_attachments"] = dropped
        return tuple(kept)

    # -- verdicts -----------------------------------------------------------------------------

    def _automatic(self, sender: str, subject: str | None) -> bool:
        reasons = automatic_reasons(self.msg, self.header, mail_from=self.mail_from,
                                    sender=sender, subject=subject)
        empty_return_path = any(r == "empty return path" for r in reasons)
        report = parse_delivery_report(
            self.msg, sender=sender, from_header=self.header("From") or "", subject=subject,
            empty_return_path=empty_return_path,
            failed_recipients=self.header("X-Failed-Recipients"))
        if report is not None:
            self.meta["delivery_report"] = report
            reasons.append("delivery report")
        if reasons:
            self.meta["automatic_reasons"] = list(dict.fromkeys(reasons))
        return bool(reasons)

    def _note_defects(self) -> None:
        defects: list[str] = list(self.notes)
        severe = bool(self.notes)
        for part in _all_parts(self.msg):
            for defect in getattr(part, "defects", ()):
                defects.append(type(defect).__name__)
                severe = severe or isinstance(defect, _SEVERE_DEFECTS)
        if severe or not self.msg.keys():
            self.flags.append("malformed")
        if defects:
            self.meta["defects"] = sorted(set(defects))[:20]

    def _envelope_meta(self, message_id: str, recipient: str | None) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "message_id": message_id or None,
            "in_reply_to": clean(self.header("In-Reply-To")),
            "mail_from": self.mail_from,
            "rcpt_to": self.rcpt_to,
            "date": _iso_date(self.header("Date")),
        }
        if not message_id:
            self.flags.append("no_message_id")
        if recipient and recipient in self.limits.inboxes:
            meta["inbox_queue"] = self.limits.inboxes[recipient]
        return meta


# -- helpers (pure functions) -------------------------------------------------------------------


def _all_parts(msg: Message) -> Iterator[Message]:
    try:
        yield from msg.walk()
    except Exception:  # walk() on a broken tree: the root still counts
        yield msg


def _is_attachment(part: Message) -> bool:
    try:
        disposition = (part.get_content_disposition() or "").lower()
        named = part.get_filename() is not None
    except Exception:  # a broken parameter list: treat the part as a file, keep it
        return True
    return disposition == "attachment" or (named and disposition != "inline") or (
        maintype(part) != "text")


def _body_parts(msg: Message) -> Iterator[Message]:
    """Inline text/plain and text/html leaves of this mail (not of attached/forwarded mails)."""
    for part in _leaves(msg):
        if ctype_of(part) in ("text/plain", "text/html") and not _is_attachment(part):
            yield part


def _attachment_parts(msg: Message) -> Iterator[Message]:
    for part in _leaves(msg):
        if part is msg and not msg.is_multipart() and maintype(part) == "text":
            continue  # a single-part text mail has a body, not an attachment
        if ctype_of(part) not in ("text/plain", "text/html") or _is_attachment(part):
            yield part


def _leaves(msg: Message) -> Iterator[Message]:
    """Leaf parts in order; an attached message (message/*) counts as one leaf."""
    if maintype(msg) == "multipart":
        payload = msg.get_payload()
        if isinstance(payload, list):
            for sub in payload:
                if isinstance(sub, Message):
                    yield from _leaves(sub)
            return
    yield msg


def _attachment(part: Message, index: int) -> InboundAttachment:
    content_type = ctype_of(part)
    data = _part_bytes(part)
    try:
        filename = clean(part.get_filename()) or ""
    except Exception:
        filename = ""
    if not filename:
        extension = ".eml" if content_type == "message/rfc822" else (
            mimetypes.guess_extension(content_type) or ".bin")
        filename = f"part-{index}{extension}"
    content_id = clean(part.get("Content-ID")) if part.get("Content-ID") else None
    inline = (part.get_content_disposition() or "") == "inline" or (
        content_id is not None and part.get_content_disposition() is None)
    return InboundAttachment(filename=filename[:255], content_type=content_type, data=data,
                             content_id=content_id.strip("<> ") if content_id else None,
                             inline=inline)


def _part_bytes(part: Message) -> bytes:
    payload = part.get_payload()
    if isinstance(payload, list):  # message/rfc822, message/delivery-status: sub-messages
        return b"\n".join(_message_bytes(m) for m in payload if isinstance(m, Message))
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if isinstance(data, bytes):
        return data
    return str(part.get_payload()).encode("utf-8", "surrogateescape")


def _message_bytes(msg: Message) -> bytes:
    try:
        return msg.as_bytes(policy=policy.compat32)
    except Exception:  # serialising a broken tree can fail; its text is still worth keeping
        return str(msg).encode("utf-8", "surrogateescape")


def _decode_raw_header(value: str) -> str:
    try:
        return str(make_header(decode_header(value)))
    except Exception:
        return value


def _valid_address(address: str) -> str | None:
    address = (clean(address) or "").strip().strip("<>").strip().lower()
    if not address or "@" not in address or any(c.isspace() for c in address):
        address = parseaddr(address)[1].lower()
    local, _, domain = address.rpartition("@")
    if local and domain and ("." in domain or domain == "localhost"):
        return address
    return None


def _pick_recipient(candidates: Sequence[str], domains: Sequence[str]) -> tuple[str | None,
                                                                                   list[str]]:
    """(the first address in our domains with its plus-part removed, tokens in plus-parts)."""
    tokens: list[str] = []
    chosen: str | None = None
    for candidate in candidates:
        address = _valid_address(candidate)
        if not address:
            continue
        local, _, domain = address.rpartition("@")
        if domains and domain not in domains:
            continue
        base, plus, tag = local.partition("+")
        if plus:
            tokens += find_tokens(tag)
        if chosen is None:
            chosen = f"{base}@{domain}"
    return chosen, tokens


def _bare_id(value: str) -> str:
    found = _MSGID_RE.search(value)
    bare = found.group(1) if found else value.strip()
    return (clean(bare) or "")[:995]


def _reference(subject: str | None) -> str | None:
    match = REFERENCE_RE.search(subject or "")
    return match.group(1) if match else None


def _raw_key(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _iso_date(value: str | None) -> str | None:
    if not value:
        return None
    try:
        parsed: datetime = parsedate_to_datetime(value)
    except Exception:
        return None
    return parsed.isoformat()
