"""Staff replies by email: build a threaded MIME message and hand it to the relay.

This module owns what our outgoing mail looks like to the citizen's mail client (From from
config, a Message-ID carrying the signed conversation token, In-Reply-To/References that
continue the citizen's thread, a plus-addressed Reply-To, `[#REF]` in the subject,
Auto-Submitted on automatic mail, text + HTML + attachments) and how relay answers map to
the hub's retry policy: 4xx and connection trouble are transient, 5xx permanent.
"""

from __future__ import annotations

import hashlib
import html
import logging
import re
import smtplib
import ssl
from dataclasses import replace
from email import errors as email_errors
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.policy import SMTPUTF8 as SMTPUTF8_POLICY
from email.utils import formatdate, getaddresses
from typing import Any

from hub.adapters.base import PermanentError, TransientError
from hub.model import OutboundMessage, SendResult

log = logging.getLogger(__name__)

_QUEUE_ID_RE = re.compile(r"queued as ([A-Za-z0-9._-]+)", re.IGNORECASE)
_RE_PREFIX = re.compile(r"^\s*(re|aw|sv|vs|antw|r|rif|odp)\s*:\s*", re.IGNORECASE)


def build_message(msg: OutboundMessage, from_header: str) -> tuple[EmailMessage, str]:
    """(the MIME message, our bare Message-ID) for one outbound message."""
    display, address = _parse_from(from_header)
    local, _, domain = address.partition("@")
    bare_id = _message_id(msg, domain)
    mail = EmailMessage()
    mail["From"] = Address(msg.sender_name or display, addr_spec=address)
    mail["To"] = msg.to
    mail["Subject"] = _subject(msg)
    mail["Date"] = formatdate(localtime=False, usegmt=True)
    mail["Message-ID"] = f"<{bare_id}>"
    if msg.reply_token:
        mail["Reply-To"] = Address(display, addr_spec=f"{local}+{msg.reply_token}@{domain}")
    _thread_headers(mail, msg)
    if msg.automatic:
        mail["Auto-Submitted"] = "auto-replied"  # RFC 3834: their autoresponder must not answer
        mail["X-Auto-Response-Suppress"] = "All"  # the same, in Exchange's dialect
    mail.set_content(msg.body)
    mail.add_alternative(msg.html or _html_from_text(msg.body), subtype="html")
    for attachment in msg.attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        mail.add_attachment(attachment.data, maintype=maintype or "application",
                            subtype=subtype or "octet-stream", filename=attachment.filename)
    return mail, bare_id


def _parse_from(from_header: str) -> tuple[str, str]:
    pairs = getaddresses([from_header])
    display, address = pairs[0] if pairs else ("", "")
    if "@" not in address:
        raise PermanentError(f"[email] from is not an address: {from_header!r}", code="config")
    return display, address


def _message_id(msg: OutboundMessage, domain: str) -> str:
    # Derived from the idempotency key, not random: a job that runs twice sends the same
    # Message-ID, and receiving systems (and our bounce matching) treat the copies as one.
    unique = hashlib.sha256(msg.idempotency_key.encode()).hexdigest()[:20]
    prefix = f"{msg.reply_token}." if msg.reply_token else ""
    return f"{prefix}{unique}@{domain}"


def _subject(msg: OutboundMessage) -> str:
    """A staff reply answers the citizen's subject ("Re: ..."); an automatic message (the
    acknowledgment, an auto-reply) has a subject of its own and starts from our side, so no
    "Re:". Either way the reference appears once."""
    subject = " ".join((msg.subject or "").split())
    text = subject if msg.automatic and subject else _reply_subject(subject)
    if msg.reference and msg.reference not in text:
        text = f"{text} [#{msg.reference}]".strip()
    return text


def _reply_subject(subject: str) -> str:
    base = _RE_PREFIX.sub("", subject)
    return f"Re: {base}" if base else ""


def _thread_headers(mail: EmailMessage, msg: OutboundMessage) -> None:
    references = [r for r in msg.references if r]
    if msg.in_reply_to:
        mail["In-Reply-To"] = f"<{msg.in_reply_to.strip('<>')}>"
        if msg.in_reply_to not in references:
            references.append(msg.in_reply_to)
    if references:
        mail["References"] = " ".join(f"<{r.strip('<>')}>" for r in references)


def _html_from_text(text: str) -> str:
    paragraphs = (html.escape(p).replace("\n", "<br>\n") for p in text.split("\n\n"))
    return "<!doctype html>\n<html><body>\n" + "\n".join(
        f"<p>{p}</p>" for p in paragraphs) + "\n</body></html>\n"


class RelaySender:
    """Blocking delivery to the configured relay; called from a worker job's thread."""

    def __init__(self, email_settings: Any) -> None:
        self.config = email_settings

    def send(self, msg: OutboundMessage) -> SendResult:
        if "@" not in msg.to or any(c.isspace() for c in msg.to.strip()):
            raise PermanentError("recipient is not an email address", code="bad_recipient")
        to = _idna_domain(msg.to.strip())
        mail, bare_id = build_message(replace(msg, to=to), self.config.from_)
        envelope_from = _parse_from(self.config.from_)[1]
        queue_id = self._deliver(mail, envelope_from, to)
        log.info("email sent to relay, message %s, relay queue id %s", msg.message_id, queue_id)
        return SendResult(provider_id=bare_id, thread_key=bare_id)

    def _deliver(self, mail: EmailMessage, envelope_from: str, to: str) -> str | None:
        cfg = self.config
        try:
            with smtplib.SMTP(cfg.relay_host, cfg.relay_port,
                              timeout=cfg.relay_timeout_seconds) as client:
                client.ehlo()
                if cfg.relay_starttls:
                    client.starttls(context=ssl.create_default_context())
                    client.ehlo()
                if cfg.relay_username:
                    client.login(cfg.relay_username, cfg.relay_password.get_secret_value())
                return _transaction(client, mail, envelope_from, to)
        except smtplib.SMTPResponseException as exc:
            raise _classify(exc.smtp_code, exc.smtp_error) from None
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            raise _classify(code, text) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentError(f"relay does not support {exc}", code="relay_config") from None
        except (smtplib.SMTPException, OSError) as exc:  # refused, reset, timeout, TLS
            raise TransientError(f"relay unreachable: {type(exc).__name__}: {exc}",
                                 code="connection") from None
        except (UnicodeError, ValueError, email_errors.MessageError) as exc:
            # The message itself cannot be put on the wire: trying again would not change it.
            raise PermanentError(f"message cannot be encoded: {type(exc).__name__}",
                                 code="encoding") from None


def _idna_domain(address: str) -> str:
    """A non-ASCII domain in its ASCII (IDNA) form, which needs nothing of the relay; a
    non-ASCII local part stays as it is and needs SMTPUTF8."""
    local, _, domain = address.rpartition("@")
    if domain.isascii():
        return address
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        raise PermanentError("recipient's domain is not a valid name",
                             code="bad_recipient") from None


def _transaction(client: smtplib.SMTP, mail: EmailMessage, envelope_from: str,
                 to: str) -> str | None:
    """MAIL/RCPT/DATA by hand, to read the relay's DATA answer (its queue id)."""
    utf8 = not (envelope_from + to).isascii()
    if utf8 and not client.has_extn("smtputf8"):
        # RFC 6531: without SMTPUTF8 such an address cannot be sent at all. Permanent, so
        # staff see it at once instead of an endless retry.
        raise PermanentError("the address is not ASCII and the relay does not offer SMTPUTF8",
                             code="smtputf8_unsupported")
    data = mail.as_bytes(policy=SMTPUTF8_POLICY if utf8 else SMTP_POLICY)
    options = [f"SIZE={len(data)}"] if client.has_extn("size") else []
    if client.has_extn("8bitmime"):
        options.append("BODY=8BITMIME")
    if utf8:
        options.append("SMTPUTF8")
    for command, args in (("mail", (envelope_from, options)), ("rcpt", (to,))):
        code, text = getattr(client, command)(*args)
        if code >= 400:
            raise _classify(code, text)
    code, text = client.data(data)
    if code >= 400:
        raise _classify(code, text)
    match = _QUEUE_ID_RE.search(text.decode("utf-8", "replace"))
    return match.group(1) if match else None


def _classify(code: int, text: bytes | str) -> TransientError | PermanentError:
    reply = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    detail = f"relay answered {code} {reply}"[:500]
    if 500 <= code < 600:
        return PermanentError(detail, code=str(code))
    return TransientError(detail, code=str(code))
