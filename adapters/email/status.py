"""Delivery reports: recognise a bounce and find which of our sent messages it is about.

This module owns reading RFC 3464 delivery status notifications (multipart/report,
report-type=delivery-status) and the common non-standard bounces (Postfix/qmail/Exim/DMA
text bounces, `X-Failed-Recipients`), and producing `meta["delivery_report"]`:

    {"status": "bounced" | "delayed" | "delivered", "refers_to": [bare Message-IDs],
     "diagnostic": str, "recipient": str}

`refers_to` holds the Message-IDs of the *original* message quoted in the report (its
message/rfc822 or text/rfc822-headers part, or the header lines copied into the text), which is
how the intake finds the outbound message to mark.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32
from typing import Any

from .body import clean, ctype_of, decode_part, maintype

_BOUNCE_SUBJECT = re.compile(
    r"(undeliver|undelivered mail|returned mail|return(ed)? to sender|delivery status notification|"
    r"delivery (has )?fail|failure notice|mail delivery (failed|failure|subsystem|system)|"
    r"could not be delivered|non[- ]?delivery|delivery problem|mail system error|"
    r"unzustellbar|nicht zustellbar|non remis|no se puede entregar|onbestelbaar|"
    r"delivery notification|warning: could not send|message not delivered|rejected)",
    re.IGNORECASE,
)
_DELAY_SUBJECT = re.compile(r"\b(delay(ed)?|warning|not yet been delivered)\b", re.IGNORECASE)
_MACHINE_SENDER = re.compile(r"(^|\W)(mailer-daemon|postmaster|mail-daemon)\b", re.IGNORECASE)
_BODY_MESSAGE_ID = re.compile(r"^[ \t>]*Message-I[Dd]:[ \t]*<?([^<>\s]+@[^<>\s]+?)>?[ \t]*$",
                              re.MULTILINE | re.IGNORECASE)
_SMTP_DIAGNOSTIC = re.compile(
    r"^.*\b([45]\d\d[ -][245]\.\d{1,3}\.\d{1,3}|[45]\.\d{1,3}\.\d{1,3}|[45]\d\d\s+\S).*$",
    re.MULTILINE,
)
_ADDRESS = re.compile(r"<?([A-Za-z0-9._%+'=-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,})>?")
_ACTION_STATUS = {"failed": "bounced", "delayed": "delayed", "delivered": "delivered",
                  "relayed": "delivered", "expanded": "delivered"}
MAX_DIAGNOSTIC = 500


def parse_delivery_report(
    msg: Message, *, sender: str, from_header: str, subject: str | None,
    empty_return_path: bool, failed_recipients: str | None,
) -> dict[str, Any] | None:
    """The delivery report carried by `msg`, or None when it is not a bounce/DSN.

    `from_header` is the decoded From line: "MAILER-DAEMON <>" has no usable address, but the
    name alone says who wrote it.
    """
    status_part = _find(msg, "message/delivery-status")
    if status_part is not None:
        return _standard_report(msg, status_part)
    machine = (bool(_MACHINE_SENDER.match(sender) or _MACHINE_SENDER.search(from_header))
               or empty_return_path)
    if _looks_like_bounce(msg, machine, subject, failed_recipients):
        return _text_report(msg, subject, failed_recipients)
    return None


def _looks_like_bounce(msg: Message, machine: bool, subject: str | None,
                       failed_recipients: str | None) -> bool:
    if failed_recipients:
        return True
    if ctype_of(msg) == "multipart/report" and (
            str(msg.get_param("report-type") or "").lower() == "delivery-status"):
        return True  # a DSN whose status part the parser could not find (broken boundary)
    if not machine:
        return False
    if subject and _BOUNCE_SUBJECT.search(subject):
        return True
    return _find(msg, "message/rfc822") is not None or _find(msg, "text/rfc822-headers") is not None


def _standard_report(msg: Message, status_part: Message) -> dict[str, Any]:
    blocks = _status_blocks(status_part)
    recipients = blocks[1:] or blocks  # the first block is per-message, the rest per-recipient
    chosen = next((b for b in recipients if _get(b, "Action").lower() == "failed"), None)
    chosen = chosen or (recipients[0] if recipients else None)
    action = _get(chosen, "Action").lower() if chosen is not None else ""
    diagnostic = _get(chosen, "Diagnostic-Code") or _get(chosen, "Status")
    recipient = _get(chosen, "Final-Recipient") or _get(chosen, "Original-Recipient")
    return {
        "status": _ACTION_STATUS.get(action, "bounced"),
        "refers_to": _original_ids(msg),
        "diagnostic": _shorten(_strip_type(diagnostic) or _body_diagnostic(msg)),
        "recipient": _strip_type(recipient).lower(),
    }


def _text_report(msg: Message, subject: str | None,
                 failed_recipients: str | None) -> dict[str, Any]:
    text = _all_text(msg)
    delayed = bool(subject and _DELAY_SUBJECT.search(subject)) and "fail" not in (subject or "")
    recipient = (failed_recipients or "").split(",")[0].strip()
    if not recipient:
        match = _ADDRESS.search(text)
        recipient = match.group(1) if match else ""
    return {
        "status": "delayed" if delayed else "bounced",
        "refers_to": _original_ids(msg, text),
        "diagnostic": _shorten(_body_diagnostic(msg, text)),
        "recipient": recipient.lower(),
    }


def _original_ids(msg: Message, text: str | None = None) -> list[str]:
    """Message-IDs of the returned original: attached message, attached headers, or copied text."""
    ids: list[str] = []
    for part in _walk(msg):
        ctype = ctype_of(part)
        if ctype == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                ids += _ids_in_headers(inner[0])
        elif ctype == "text/rfc822-headers":
            ids += _ids_in_headers(HeaderParser(policy=compat32).parsestr(decode_part(part)))
    if not ids:
        ids = [m.group(1) for m in _BODY_MESSAGE_ID.finditer(text or _all_text(msg))]
    own = _get(msg, "Message-ID").strip("<> ")
    return list(dict.fromkeys(i for i in (clean(x) or "" for x in ids) if i and i != own))[:10]


def _ids_in_headers(headers: Message) -> list[str]:
    value = _get(headers, "Message-ID").strip()
    return [value.strip("<>")] if value else []


def _status_blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [b for b in payload if isinstance(b, Message)]
    # Some MTAs put the fields in a part the parser did not split: parse them ourselves.
    text = decode_part(part)
    return [HeaderParser(policy=compat32).parsestr(chunk) for chunk in re.split(r"\n\s*\n", text)
            if chunk.strip()]


def _body_diagnostic(msg: Message, text: str | None = None) -> str:
    body = text if text is not None else _all_text(msg)
    match = _SMTP_DIAGNOSTIC.search(body)
    return match.group(0).strip() if match else ""


def _all_text(msg: Message) -> str:
    """Text of the report's own human-readable parts (not of the returned original)."""
    chunks = []
    for part in _walk(msg):
        text_part = (maintype(part) == "text"
                     and ctype_of(part) != "text/html")
        # A multipart whose boundary is missing carries its whole body as one string.
        if text_part or isinstance(part.get_payload(), str):
            chunks.append(decode_part(part))
    return "\n".join(chunks)[:200_000]


def _walk(msg: Message) -> Iterator[Message]:
    """Leaf and message parts, without descending into an attached message (its text would be
    taken for the report's)."""
    yield msg
    if msg.is_multipart() and maintype(msg) == "multipart":
        for sub in msg.get_payload():
            if isinstance(sub, Message):
                yield from _walk(sub)


def _find(msg: Message, content_type: str) -> Message | None:
    return next((p for p in _walk(msg) if ctype_of(p) == content_type), None)


def _get(block: Message | None, name: str) -> str:
    if block is None:
        return ""
    try:
        value = block.get(name)
    except Exception:  # a header the policy cannot parse
        return ""
    return " ".join(str(value).split()) if value is not None else ""


def _strip_type(value: str) -> str:
    """'rfc822; a@b' -> 'a@b', 'smtp; 550 5.1.1 ...' -> '550 5.1.1 ...'."""
    return value.split(";", 1)[1].strip() if ";" in value else value.strip()


def _shorten(value: str) -> str:
    return (clean(value) or "")[:MAX_DIAGNOSTIC]
