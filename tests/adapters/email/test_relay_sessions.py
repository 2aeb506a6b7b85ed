"""Relay sessions are kept open and reused: many replies go over one SMTP connection, a session
the relay dropped (or closed with 421) is replaced without failing the reply, a refused mail
leaves its session clean for the next, and the sessions are closed on shutdown (also by the hub).

The relay here counts its connections and can drop them; nothing here depends on timings.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from hub.adapters.base import PermanentError
from hub.adapters.email import EmailAdapter
from hub.app import Hub
from hub.model import OutboundMessage

from .conftest import DOMAIN, SECRET, live_settings
from .test_outbound import _reply


@dataclass
class CountingHandler:
    received: list[Envelope] = field(default_factory=list)
    refuse_rcpt: set[str] = field(default_factory=set)
    mail_answers: list[str] = field(default_factory=list)  # answers to MAIL, used up in order

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        if self.mail_answers:
            return self.mail_answers.pop(0)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        if address in self.refuse_rcpt:
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append(envelope)
        return "250 2.0.0 Ok: queued as R1"


@dataclass
class CountingRelay:
    handler: CountingHandler
    port: int
    opened: int = 0
    open_now: set[Any] = field(default_factory=set)

    def drop_all(self) -> None:
        """The relay closes every session (its idle timeout, a restart)."""
        for transport in list(self.open_now):
            transport.close()


@pytest.fixture
async def counting_relay() -> AsyncIterator[CountingRelay]:
    handler = CountingHandler()
    relay = CountingRelay(handler, 0)
    loop = asyncio.get_running_loop()

    class Counting(SMTP):
        def connection_made(self, transport: Any) -> None:
            relay.opened += 1
            relay.open_now.add(transport)
            super().connection_made(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            relay.open_now.discard(self.transport)
            super().connection_lost(exc)

    server = await loop.create_server(lambda: Counting(handler, hostname="relay.test", loop=loop),
                                      "127.0.0.1", 0)
    relay.port = server.sockets[0].getsockname()[1]
    yield relay
    relay.drop_all()
    server.close()
    await server.wait_closed()


def _adapter(port: int) -> EmailAdapter:
    from hub.config import Settings

    settings = Settings.model_validate({
        "email": {"from": f"City Hall <help@{DOMAIN}>", "relay_host": "127.0.0.1",
                  "relay_port": port, "relay_timeout_seconds": 5},
        "smtp": {"domains": [DOMAIN]},
    })
    return EmailAdapter(settings, reply_secret=SECRET)


def _replies(count: int) -> list[OutboundMessage]:
    return [_reply(message_id=i, idempotency_key=f"outbox-{i}") for i in range(count)]


async def _closed(relay: CountingRelay) -> bool:
    for _ in range(200):  # the relay notices the QUIT on its own loop
        if not relay.open_now:
            return True
        await asyncio.sleep(0.01)
    return False


async def test_many_replies_one_after_another_share_one_session(
        counting_relay: CountingRelay) -> None:
    adapter = _adapter(counting_relay.port)
    for msg in _replies(12):
        await adapter.send(msg)
    assert len(counting_relay.handler.received) == 12
    assert counting_relay.opened == 1
    await adapter.close_connections()
    assert await _closed(counting_relay)


async def test_concurrent_replies_use_a_few_sessions_and_keep_them(
        counting_relay: CountingRelay) -> None:
    adapter = _adapter(counting_relay.port)
    await asyncio.gather(*(adapter.send(msg) for msg in _replies(24)))
    first_round = counting_relay.opened
    assert 1 <= first_round <= adapter.sender.connections.max_idle
    await asyncio.gather(*(adapter.send(msg) for msg in _replies(24)))
    assert len(counting_relay.handler.received) == 48
    assert counting_relay.opened <= adapter.sender.connections.max_idle
    await adapter.close_connections()


async def test_a_session_the_relay_dropped_is_replaced_and_the_reply_goes_out(
        counting_relay: CountingRelay) -> None:
    adapter = _adapter(counting_relay.port)
    await adapter.send(_replies(1)[0])
    counting_relay.drop_all()
    assert await _closed(counting_relay)
    await adapter.send(_reply(message_id=2, idempotency_key="outbox-2"))
    assert len(counting_relay.handler.received) == 2
    assert counting_relay.opened == 2
    await adapter.close_connections()


async def test_a_421_to_mail_on_a_reused_session_means_a_new_session(
        counting_relay: CountingRelay) -> None:
    adapter = _adapter(counting_relay.port)
    await adapter.send(_replies(1)[0])
    counting_relay.handler.mail_answers.append("421 4.7.0 Too many messages on this session")
    await adapter.send(_reply(message_id=2, idempotency_key="outbox-2"))
    assert len(counting_relay.handler.received) == 2 and counting_relay.opened == 2
    await adapter.close_connections()


async def test_a_refused_reply_leaves_its_session_clean_for_the_next(
        counting_relay: CountingRelay) -> None:
    adapter = _adapter(counting_relay.port)
    counting_relay.handler.refuse_rcpt.add("gone@example.org")
    with pytest.raises(PermanentError):
        await adapter.send(_reply(to="gone@example.org"))
    result = await adapter.send(_reply(message_id=2, idempotency_key="outbox-2"))
    (envelope,) = counting_relay.handler.received
    assert envelope.rcpt_tos == ["ana@example.org"] and result.provider_id
    assert counting_relay.opened == 1  # RSET, not a new session
    await adapter.close_connections()


async def test_the_hub_closes_its_relay_sessions_when_it_stops(
        settings_data: dict[str, dict[str, object]], counting_relay: CountingRelay) -> None:
    hub = Hub(live_settings(settings_data, counting_relay.port))
    await hub.prepare()
    adapter = hub.adapters.get("email")
    assert isinstance(adapter, EmailAdapter)
    await adapter.send(_replies(1)[0])
    assert counting_relay.open_now
    await hub.stop()
    assert await _closed(counting_relay)
