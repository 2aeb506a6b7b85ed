"""A channel adapter for tests: pushes InboundMessages into the intake and records sends.

It can be told to fail: `fail_transient(n)` makes the next n sends raise TransientError,
`fail_permanent()` makes every send raise PermanentError.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from hub.adapters.base import Capability, PermanentError, TransientError
from hub.model import InboundMessage, OutboundMessage, SendResult, ThreadHints, utcnow

_counter = itertools.count(1)


@dataclass
class RecordingAdapter:
    name: str = "sms"
    capabilities: Capability = Capability.DELIVERY_STATUS
    hooks: frozenset[str] = frozenset()
    sent: list[OutboundMessage] = field(default_factory=list)
    attempts: int = 0
    _transient_left: int = 0
    _permanent: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_transient(self, times: int) -> None:
        self._transient_left = times

    def fail_permanent(self) -> None:
        self._permanent = True

    async def send(self, msg: OutboundMessage) -> SendResult:
        with self._lock:
            self.attempts += 1
            if self._permanent:
                raise PermanentError("recipient rejected", code="21211")
            if self._transient_left > 0:
                self._transient_left -= 1
                raise TransientError("provider busy", code="503")
            self.sent.append(msg)
            return SendResult(provider_id=f"TEST-{msg.idempotency_key}",
                              thread_key=f"test-{msg.message_id}")


def inbound(sender: str = "+15551230001", text: str = "There is a pothole on Main St",
            *, channel: str = "sms", provider_id: str | None = None,
            received_at: datetime | None = None, **kwargs: Any) -> InboundMessage:
    kwargs.setdefault("thread", ThreadHints(continue_latest=channel != "email"))
    msg = InboundMessage(channel=channel, provider_id=provider_id or f"P{next(_counter)}",
                         sender=sender, text=text, received_at=received_at or utcnow(), **kwargs)
    return msg


def with_(msg: InboundMessage, **changes: Any) -> InboundMessage:
    return replace(msg, **changes)
