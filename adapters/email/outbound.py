"""Staff replies by email: build a threaded MIME message and hand it to the relay.

This module owns what our outgoing mail looks like to the citizen's mail client (From from
config, a Message-ID carrying the signed conversation token, In-Reply-To/References that
continue the citizen's thread, a plus-addressed Reply-To, `[#REF]` in the subject,
Auto-Submitted on automatic mail, text + HTML + attachments) and how relay answers map to
the hub's retry policy: 4xx and connection trouble are transient, 5xx permanent. The mails go
over relay sessions kept open between sends (`relay.RelayConnections`); a session that turns
out closed before the relay took the MAIL command is replaced and the mail sent again on it.
"""

from __future__ import annotations

import hashlib
import html
import logging
import re
import smtplib
from dataclasses import replace
from email import errors as email_errors
from email.contentmanager import _encode_text  # type: ignore[attr-defined]
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.policy import default as _POLICY
from email.utils import formatdate, getaddresses
from functools import lru_cache
from typing import Any

from hub.adapters.base import PermanentError, TransientError
from hub.model import OutboundMessage, SendResult

from .normalize import HeaderClassesOnce
from .relay import RelayConnections, Session

log = logging.getLogger(__name__)

_QUEUE_ID_RE = re.compile(r"queued as ([A-Za-z0-9._-]+)", re.IGNORECASE)
_RE_PREFIX = re.compile(r"^\s*(re|aw|sv|vs|antw|r|rif|odp)\s*:\s*", re.IGNORECASE)


def build_message(msg: OutboundMessage, from_header: str) -> tuple[EmailMessage, str]:
    """(the MIME message, our bare Message-ID) for one outbound message."""
    display, address = _parse_from(from_header)
    local, _, domain = address.partition("@")
    bare_id = _message_id(msg, domain)
    mail = EmailMessage(policy=BUILD_POLICY)
    mail["From"] = _address_header("From", msg.sender_name or display, address)
    mail["To"] = _header("To", msg.to)
    mail["Subject"] = _header("Subject", _subject(msg))
    mail["Date"] = _header("Date", formatdate(localtime=False, usegmt=True))
    mail["Message-ID"] = _header("Message-ID", f"<{bare_id}>")
    if msg.reply_token:
        mail["Reply-To"] = _address_header("Reply-To", display,
                                           f"{local}+{msg.reply_token}@{domain}")
    _thread_headers(mail, msg)
    if msg.automatic:
        # RFC 3834: their autoresponder must not answer; the same, in Exchange's dialect.
        mail["Auto-Submitted"] = _header("Auto-Submitted", "auto-replied")
        mail["X-Auto-Response-Suppress"] = _header("X-Auto-Response-Suppress", "All")
    _alternative(mail, msg.body, msg.html or _html_from_text(msg.body))
    for attachment in msg.attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        mail.add_attachment(attachment.data, maintype=maintype or "application",
                            subtype=subtype or "octet-stream", filename=attachment.filename)
    return mail, bare_id


BUILD_POLICY = EmailPolicy(header_factory=HeaderClassesOnce())  # email.policy.default otherwise


# Parsing header values into the email package's header objects is most of the cost of a mail,
# and most values repeat from one mail to the next (From, Reply-To of a conversation, the
# content headers). Header objects are immutable and folding does not change them, so one
# parsed object serves every mail that has the same value.

@lru_cache(maxsize=4096)
def _header(name: str, value: str) -> Any:
    return BUILD_POLICY.header_store_parse(name, value)[1]


@lru_cache(maxsize=1024)
def _address_header(name: str, display: str, addr_spec: str) -> Any:
    return BUILD_POLICY.header_store_parse(name, Address(display, addr_spec=addr_spec))[1]


class _FoldsOnce(EmailPolicy):
    """A policy that folds each header object once: the objects `_header` keeps serve many
    mails, and folding (a parse tree rendered to lines) is the dearest step of writing one.
    The folded text is kept on the object itself, which this module made and nobody else
    holds, so it can never stand for a different value."""

    def _fold(self, name: str, value: Any, refold_binary: bool = False) -> str:
        memo = getattr(value, "__dict__", None)
        if memo is None or not hasattr(value, "fold"):
            return str(super()._fold(name, value, refold_binary))  # type: ignore[misc]
        key = ("civic-hub folded", self.utf8, self.linesep, self.max_line_length,
               refold_binary)
        folded = memo.get(key)
        if folded is None:
            folded = memo[key] = super()._fold(name, value, refold_binary)  # type: ignore[misc]
        return str(folded)


SMTP_POLICY = _FoldsOnce(linesep="\r\n")  # email.policy.SMTP, folding each header once
SMTPUTF8_POLICY = SMTP_POLICY.clone(utf8=True)
# A boundary that quoted-printable and base64 cannot produce ("=_" is neither a QP escape nor
# base64): only a 7bit or 8bit part can hold it, and then the generator picks one instead.
_BOUNDARY = "=_civic-hub-alternative"


def _alternative(mail: EmailMessage, text: str, html_text: str) -> None:
    """multipart/alternative of the text and its HTML: what `set_content(text)` and then
    `add_alternative(html_text, subtype="html")` make, with parsed headers reused."""
    parts = [_text_part(text, "plain", mime_version=False),
             _text_part(html_text, "html", mime_version=True)]
    boundary_free = all(_BOUNDARY not in str(part.get_payload()) for part in parts)
    mail["MIME-Version"] = _header("MIME-Version", "1.0")
    mail["Content-Type"] = _header("Content-Type", f'multipart/alternative; boundary="{_BOUNDARY}"'
                                   if boundary_free else "multipart/alternative")
    for part in parts:
        mail.attach(part)


def _text_part(text: str, subtype: str, *, mime_version: bool) -> EmailMessage:
    part = EmailMessage(policy=BUILD_POLICY)
    cte, payload = _encode_text(text, "utf-8", None, _POLICY)
    part["Content-Type"] = _header("Content-Type", f'text/{subtype}; charset="utf-8"')
    part["Content-Transfer-Encoding"] = _header("Content-Transfer-Encoding", cte)
    if mime_version:  # as EmailMessage.set_content adds it to a part it fills
        part["MIME-Version"] = _header("MIME-Version", "1.0")
    part.set_payload(payload)
    return part


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
        mail["In-Reply-To"] = _header("In-Reply-To", f"<{msg.in_reply_to.strip('<>')}>")
        if msg.in_reply_to not in references:
            references.append(msg.in_reply_to)
    if references:
        mail["References"] = _header("References",
                                     " ".join(f"<{r.strip('<>')}>" for r in references))


def _html_from_text(text: str) -> str:
    paragraphs = (html.escape(p).replace("\n", "<br>\n") for p in text.split("\n\n"))
    return "<!doctype html>\n<html><body>\n" + "\n".join(
        f"<p>{p}</p>" for p in paragraphs) + "\n</body></html>\n"


class RelaySender:
    """Blocking delivery to the configured relay; called from a worker job's thread. Sessions
    to the relay are kept open and reused (`RelayConnections`)."""

    def __init__(self, email_settings: Any) -> None:
        self.config = email_settings
        self.connections = RelayConnections(email_settings)

    def send(self, msg: OutboundMessage) -> SendResult:
        if "@" not in msg.to or any(c.isspace() for c in msg.to.strip()):
            raise PermanentError("recipient is not an email address", code="bad_recipient")
        to = _idna_domain(msg.to.strip())
        mail, bare_id = build_message(replace(msg, to=to), self.config.from_)
        envelope_from = _parse_from(self.config.from_)[1]
        queue_id = self._deliver(mail, envelope_from, to)
        log.info("email sent to relay, message %s, relay queue id %s", msg.message_id, queue_id)
        return SendResult(provider_id=bare_id, thread_key=bare_id)

    def close(self) -> None:
        self.connections.close()

    def _deliver(self, mail: EmailMessage, envelope_from: str, to: str) -> str | None:
        try:
            return self._on_a_session(mail, envelope_from, to)
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

    def _on_a_session(self, mail: EmailMessage, envelope_from: str, to: str) -> str | None:
        session = self.connections.acquire()
        try:
            try:
                queue_id = _transaction(session.client, mail, envelope_from, to)
            except _MailNotTaken:
                if not session.reused:
                    raise
                # A session the relay has closed since (its idle timeout, a restart) or will
                # take no more mail on (its per-session limit): nothing of this mail reached
                # it, so it goes once more on a new session.
                self.connections.discard(session)
                session = self.connections.open()
                queue_id = _transaction(session.client, mail, envelope_from, to)
        except _MailNotTaken as refused:
            self.connections.discard(session)
            if refused.code is None:
                raise smtplib.SMTPServerDisconnected(refused.text) from None
            raise _classify(refused.code, refused.text) from None
        except (TransientError, PermanentError, smtplib.SMTPResponseException) as exc:
            self._after_refusal(session, exc)
            raise
        except (smtplib.SMTPNotSupportedError, UnicodeError, ValueError,
                email_errors.MessageError):
            self.connections.release_after_refusal(session)  # refused before any command
            raise
        except BaseException:  # the wire failed mid-transaction: the session's state is unknown
            self.connections.discard(session)
            raise
        self.connections.release(session)
        return queue_id

    def _after_refusal(self, session: Session, exc: Exception) -> None:
        code = exc.smtp_code if isinstance(exc, smtplib.SMTPResponseException) else getattr(
            exc, "code", None)
        if str(code) == "421":  # the relay is closing this session
            self.connections.discard(session)
        else:
            self.connections.release_after_refusal(session)


class _MailNotTaken(Exception):
    """The session ended, or the relay answered MAIL with 4xx: on a reused session that may be
    the session's fault (closed, or at the relay's limit of mails per session), not the mail's."""

    def __init__(self, code: int | None, text: bytes | str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


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
    try:
        code, text = client.mail(envelope_from, options)
    except smtplib.SMTPServerDisconnected as exc:
        raise _MailNotTaken(None, str(exc)) from None
    if 400 <= code < 500:
        raise _MailNotTaken(code, text)
    if code >= 500:
        raise _classify(code, text)
    code, text = client.rcpt(to)
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
