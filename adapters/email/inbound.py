"""The SMTP intake: an aiosmtpd server on the hub's own event loop, and the email adapter.

This module owns the SMTP conversation with the sending mail server: which recipients we take
(our domains only: no relaying), the size and line-length limits, STARTTLS, and the reply
codes. The rule that matters most: 250 is answered only after the mail is committed, as
received, to the hub's spool (one commit shared by every mail that arrived meanwhile); when it
could not be, 451 4.3.0 makes the sender retry later, and the retry is stored once. Parsing,
threading and routing happen right behind the 250 (`spool_parser`, run by the spool
worker), so a slow or strange mail never holds up the SMTP dialogue.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import weakref
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from hub.adapters.base import (
    AdapterContext,
    Busy,
    CannotListen,
    Capability,
    SpoolSink,
    Unavailable,
)
from hub.config import Settings
from hub.identities import normalize_email
from hub.model import InboundMessage, OutboundMessage, SendResult, SpoolItem

from .normalize import EmailLimits, parse_email, parse_email_raw_only, spool_key
from .outbound import RelaySender

log = logging.getLogger(__name__)

# RFC 5321 caps lines at 1,000 octets, but real mailers (Outlook, HTML newsletters, scripts)
# send longer ones, and aiosmtpd's default answers them with a *permanent* 500, bouncing a
# citizen's mail. We accept lines up to 1 MiB (capped by the message size); the message size
# limit (552) is the real guard. The reader buffers at most about twice this per connection.
MAX_LINE_BYTES = 1_048_576
# Hashing a large mail takes long enough to stall other connections; do it off the loop.
HASH_IN_THREAD_BYTES = 1024 * 1024
TEMPORARY_FAILURE = "451 4.3.0 Temporary failure, please try again later"
BUSY = "451 4.3.2 Too busy just now, please try again later"
NO_RELAY = "550 5.1.1 Recipient not accepted here"


_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
# <dot-atom@domain>, which is nearly every MAIL FROM and RCPT TO: read without the RFC 5322
# parser, whose generality costs a tenth of the loop's time under load.
_PLAIN_ADDRESS = re.compile(
    rf"<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>(.*)", re.DOTALL)


class _FastAddressSMTP(SMTP):
    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        plain = _PLAIN_ADDRESS.fullmatch(arg.lstrip())
        rest = plain.group(2).lstrip() if plain is not None else ""
        if plain is None or rest.startswith("("):  # a comment after it: the full parser
            return super()._getaddr(arg)
        address = plain.group(1)
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, rest


class _LongLineSMTP(_FastAddressSMTP):
    line_length_limit = MAX_LINE_BYTES


def _smtp_class(line_limit: int) -> type[SMTP]:
    if line_limit == MAX_LINE_BYTES:
        return _LongLineSMTP
    return type("_SizedSMTP", (_FastAddressSMTP,), {"line_length_limit": line_limit})


class SmtpHandler:
    """aiosmtpd hooks: recipient policy and the hand-over to the spool."""

    def __init__(self, spool: SpoolSink, limits: EmailLimits) -> None:
        self.spool = spool
        self.limits = limits

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        domain = address.rpartition("@")[2].strip().lower()
        if domain not in self.limits.domains:
            return NO_RELAY
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session,
                          envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        try:
            key = (await asyncio.to_thread(spool_key, raw) if len(raw) > HASH_IN_THREAD_BYTES
                   else spool_key(raw))
            receipt = await self.spool.put(SpoolItem(
                channel="email", dedupe_key=key, payload=raw,
                envelope={"mail_from": envelope.mail_from,
                          "rcpt_to": list(envelope.rcpt_tos)}))
        except Busy as exc:
            log.warning("spool full, answered 451: %s", exc)
            return BUSY
        except Unavailable as exc:
            log.warning("spool unavailable, answered 451: %s", exc)
            return TEMPORARY_FAILURE
        except Exception as exc:
            # A bug: the sender keeps the mail and retries; nothing goes back to the client.
            log.error("unexpected error during DATA, answered 451", exc_info=exc)
            return TEMPORARY_FAILURE
        if receipt.duplicate:
            return "250 2.0.0 OK (already received)"
        return "250 2.0.0 OK"

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd's default is a permanent "500 Error: (...) ...", which would make the
        # sending server bounce a citizen's mail over our own fault: ask it to try again.
        log.error("unexpected SMTP error, answered 451: %s", type(error).__name__)
        return TEMPORARY_FAILURE


def tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if not cert or not key:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


class SmtpServer:
    """One listening socket on the running loop; tracks connections so stop() can close them."""

    def __init__(self, handler: SmtpHandler, *, host: str, port: int, max_message_bytes: int,
                 tls: ssl.SSLContext | None = None, hostname: str | None = None) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.max_message_bytes = max_message_bytes
        self.tls = tls
        self.hostname = hostname or "hub.local"
        self._server: asyncio.Server | None = None
        self._connections: weakref.WeakSet[SMTP] = weakref.WeakSet()

    def _protocol(self) -> SMTP:
        cls = _smtp_class(min(MAX_LINE_BYTES, self.max_message_bytes))
        protocol = cls(self.handler, data_size_limit=self.max_message_bytes,
                       enable_SMTPUTF8=True, decode_data=False, hostname=self.hostname,
                       ident="hub ESMTP", tls_context=self.tls,
                       loop=asyncio.get_running_loop())
        self._connections.add(protocol)
        return protocol

    async def start(self) -> list[tuple[str, int]]:
        # aiosmtpd logs every command at INFO (addresses: personal data, and a measurable cost
        # per mail) and every DATA line at DEBUG (mail bodies). The handler logs what matters.
        mail_log = logging.getLogger("mail.log")
        mail_log.setLevel(max(logging.WARNING, mail_log.level))
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self.host, self.port)
        return [sock.getsockname()[:2] for sock in self._server.sockets]

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for protocol in list(self._connections):
            if protocol.transport is not None:
                protocol.transport.close()
        await self._server.wait_closed()
        self._server = None


@dataclass(frozen=True, slots=True)
class EmailSpoolParser:
    """A spooled mail back into a message; plain data, so it travels to a parse process."""

    limits: EmailLimits
    reply_secret: bytes

    def __call__(self, payload: bytes, envelope: Mapping[str, Any],
                 received_at: datetime) -> InboundMessage:
        return parse_email(payload, mail_from=envelope.get("mail_from"),
                           rcpt_to=envelope.get("rcpt_to") or (), limits=self.limits,
                           reply_secret=self.reply_secret, received_at=received_at)

    def raw_only(self, payload: bytes, envelope: Mapping[str, Any], received_at: datetime,
                 reason: str) -> InboundMessage:
        return parse_email_raw_only(payload, mail_from=envelope.get("mail_from"),
                                    rcpt_to=envelope.get("rcpt_to") or (), limits=self.limits,
                                    reply_secret=self.reply_secret, received_at=received_at,
                                    reason=reason)


class EmailAdapter:
    """The email channel: SMTP intake on the hub's loop, relay delivery in worker jobs."""

    name = "email"
    hooks = frozenset({"spool", "listener", "identity", "connections"})

    def __init__(self, settings: Settings, reply_secret: bytes) -> None:
        self.capabilities = (Capability.ATTACHMENTS | Capability.HTML | Capability.THREADING
                             | Capability.DELIVERY_STATUS)
        if settings.email.acknowledge:
            self.capabilities |= Capability.ACKNOWLEDGE
        self.settings = settings
        self.reply_secret = reply_secret
        self.limits = EmailLimits.from_settings(settings.smtp)
        self.sender = RelaySender(settings.email)
        self._threads: ThreadPoolExecutor | None = None
        self.server: SmtpServer | None = None
        self.spool_parser = EmailSpoolParser(self.limits, reply_secret)

    async def start(self, ctx: AdapterContext) -> list[str]:
        smtp = self.settings.smtp
        handler = SmtpHandler(ctx.spool, self.limits)
        self.server = SmtpServer(
            handler, host=smtp.host, port=smtp.port, max_message_bytes=smtp.max_message_bytes,
            tls=tls_context(_path(smtp.tls_cert), _path(smtp.tls_key)),
            hostname=self.limits.domains[0] if self.limits.domains else None)
        try:
            bound = await self.server.start()
        except OSError as exc:
            self.server = None
            raise CannotListen(f"cannot listen on {_hostport(smtp.host, smtp.port)} "
                               f"(smtp.port): {exc.strerror or exc}") from None
        return [f"smtp://{_hostport(host, port)}" for host, port in bound]

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None

    def normalize_identity(self, address: str) -> str:
        return normalize_email(address)

    async def send(self, msg: OutboundMessage) -> SendResult:
        # smtplib blocks: the relay conversation runs on a thread, off the job's loop, one
        # thread per session the pool keeps (the loop's default pool has fewer), so that the
        # sends a delivery runner has under way are on the wire, not waiting for a thread.
        if self._threads is None:
            self._threads = ThreadPoolExecutor(self.sender.connections.max_idle,
                                               thread_name_prefix="relay")
        return await asyncio.get_running_loop().run_in_executor(self._threads, self.sender.send,
                                                                msg)

    async def close_connections(self) -> None:
        """QUIT the relay sessions kept open between sends."""
        await asyncio.to_thread(self.sender.close)
        threads, self._threads = self._threads, None
        if threads is not None:
            threads.shutdown(wait=False)

    @property
    def bound_port(self) -> int | None:
        """The port actually listened on (useful with port 0 in tests)."""
        if self.server is None or self.server._server is None:
            return None
        return int(self.server._server.sockets[0].getsockname()[1])


def _path(value: object) -> str | None:
    return str(value) if value else None


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


__all__: Sequence[str] = ("EmailAdapter", "SmtpHandler", "SmtpServer")
