"""The adapter boundary (contract v2): what every channel implements, what the hub hands it, and
the errors both sides share.

An adapter knows its provider and nothing of storage or routing.
- Outbound, a delivery job awaits `send(msg)` and reads the transient/permanent verdict from the
  exception it raises (`TransientError`, `PermanentError`).
- Inbound, every hook gets one `AdapterContext`: the intake (already parsed messages), the spool
  (raw input committed before the provider is acknowledged, parsed later by `spool_parser`), the
  status sink (the provider's delivery reports), the event publisher, the settings and the
  public URL. When the hub cannot take input now, the sinks raise `Busy` or `Unavailable`, which
  every channel maps the same way: SMTP 451, webhook 503 with Retry-After, a polling offset that
  does not advance.
- Optional abilities are hooks the adapter declares in `hooks` (checked at start against the
  protocols below, so a misspelt hook is a start-up error, never a channel that is silently
  off) and `capabilities` flags; never stub methods.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from hub.model import (
    Accepted,
    DeliveryReport,
    InboundMessage,
    OutboundMessage,
    SendResult,
    SpoolItem,
    SpoolReceipt,
)

if TYPE_CHECKING:
    from aiohttp import web

    from hub.config import Settings
    from hub.events import Event


class Capability(enum.Flag):
    NONE = 0
    ATTACHMENTS = enum.auto()
    HTML = enum.auto()
    DELIVERY_STATUS = enum.auto()  # the provider reports delivered/failed after the send
    THREADING = enum.auto()
    IDEMPOTENT_SEND = enum.auto()  # the provider dedupes by our idempotency key
    ACKNOWLEDGE = enum.auto()  # a new conversation gets an acknowledgment with its reference
    SHORT_TEXT = enum.auto()  # read on a phone: automatic messages in their short form, no subject


# -- errors both sides share ----------------------------------------------------------------------


class DeliveryError(Exception):
    """Base of send failures; `transient` decides retry versus dead letter. `retry_after`
    (seconds) is the provider's own word on when to try again (a 429's Retry-After), which
    the outbox honours instead of its backoff."""

    transient: bool = True

    def __init__(self, message: str, *, code: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after = retry_after


class TransientError(DeliveryError):
    """Try again later: network trouble, provider 4xx-temporary/5xx, rate limits."""

    transient = True


class PermanentError(DeliveryError):
    """Will never work: invalid recipient, rejected content. The item goes to dead letter."""

    transient = False


class RecipientOptedOut(PermanentError):
    """The provider says the citizen refuses our messages (Twilio 21610 after STOP, a blocked
    Telegram bot): the item is dead and the identity is marked opted out, so later replies are
    refused at once."""


class FetchLater(Exception):
    """Raised by a spool parser: the input is fine, but a part of it that lives at the
    provider (an MMS picture, a Telegram file) cannot be fetched now. The spool tries again on
    a longer schedule than for a parse failure (hours, not seconds), since the provider keeps
    the file and its outage may last."""


class InputRefused(Exception):
    """The hub did not take this input now; the provider must send it again later."""

    retry_after: float = 60.0


class Busy(InputRefused):
    """Too much unworked input: come back later (SMTP 451 4.3.2, HTTP 503 + Retry-After)."""

    retry_after = 30.0


class Unavailable(InputRefused):
    """The database did not answer: nothing was stored (SMTP 451 4.3.0, HTTP 503)."""

    retry_after = 10.0


# -- what the hub hands to an adapter --------------------------------------------------------------


class IntakeSink(Protocol):
    async def accept(self, msg: InboundMessage) -> Accepted: ...


class SpoolSink(Protocol):
    """Commits what was received, as received, so the channel can acknowledge before parsing."""

    async def put(self, item: SpoolItem) -> SpoolReceipt: ...


class StatusSink(Protocol):
    """Takes a provider's delivery report for one of our messages; forward-only, idempotent.
    Returns whether a message of ours was found for it."""

    async def report(self, channel: str, report: DeliveryReport) -> bool: ...


class EventPublisher(Protocol):
    def publish(self, event: Event) -> None: ...


@dataclass(frozen=True, slots=True)
class AdapterContext:
    """Everything an adapter's inbound hooks may use, handed to each of them."""

    intake: IntakeSink
    spool: SpoolSink
    status: StatusSink
    events: EventPublisher
    settings: Settings
    public_url: str


# -- the adapter and its optional hooks --------------------------------------------------------


@runtime_checkable
class ChannelAdapter(Protocol):
    """What the hub needs of every channel."""

    name: str  # the conversation channel value it serves: "email", "sms", ...
    capabilities: Capability
    hooks: frozenset[str]  # the optional hooks it implements, by name (see HOOKS)

    async def send(self, msg: OutboundMessage) -> SendResult:
        """Deliver one message (in a worker job; never block the loop)."""
        ...


class RawOnlyParser(Protocol):
    """Turns a spooled payload into a message; must not raise for bad input. It runs in a parse
    process, so it must be picklable (a module-level class or function with plain settings).
    `raw_only` keeps a payload, cheaply and without failing, whose full parse overran its time
    budget or crashed (`reason` becomes a flag on the message)."""

    def __call__(self, payload: bytes, envelope: Mapping[str, Any],
                 received_at: datetime) -> InboundMessage: ...

    def raw_only(self, payload: bytes, envelope: Mapping[str, Any], received_at: datetime,
                 reason: str) -> InboundMessage: ...


@runtime_checkable
class Spooling(Protocol):
    """Hook "spool": the adapter commits raw input to the spool and parses it later."""

    spool_parser: RawOnlyParser


@runtime_checkable
class ServesHttp(Protocol):
    """Hook "routes": webhooks mounted on the hub's aiohttp app."""

    def routes(self, ctx: AdapterContext) -> Iterable[web.RouteDef]: ...


@runtime_checkable
class RunsOnLoop(Protocol):
    """Hook "listener": its own listener (SMTP server, Telegram polling) started with the hub."""

    async def start(self, ctx: AdapterContext) -> list[str]:
        """Start listening; return human-readable addresses for the start-up banner."""
        ...

    async def stop(self) -> None: ...


@runtime_checkable
class NormalizesIdentity(Protocol):
    """Hook "identity": the channel's one normal form of an address (raises ValueError)."""

    def normalize_identity(self, address: str) -> str: ...


@runtime_checkable
class KeepsConnections(Protocol):
    """Hook "connections": sends reuse connections to the provider (an SMTP relay's sessions)
    that stay open between sends; the hub closes them when it stops, `hub worker` included."""

    async def close_connections(self) -> None: ...


@runtime_checkable
class LimitsText(Protocol):
    """Hook "limits": the channel cannot carry every text (an SMS of too many segments); the
    hub asks before it queues a staff reply, so staff shorten it at once instead of finding
    it dead later."""

    def too_long(self, body: str) -> str | None:
        """Why `body` cannot be sent on this channel, or None when it can."""
        ...


@runtime_checkable
class PublishesEvents(Protocol):
    """Hook "events": `send` publishes on the hub's event bus (the web chat pushes a staff reply
    to the process that holds the visitor's socket); the hub hands the adapter its bus when it
    is built, in `hub serve` and `hub worker` alike."""

    def bind_events(self, events: EventPublisher) -> None: ...


HOOKS: dict[str, tuple[type, tuple[str, ...]]] = {
    # hook name: (protocol, the coroutine methods it must have)
    "spool": (Spooling, ()),
    "routes": (ServesHttp, ()),
    "listener": (RunsOnLoop, ("start", "stop")),
    "identity": (NormalizesIdentity, ()),
    "connections": (KeepsConnections, ("close_connections",)),
    "limits": (LimitsText, ()),
    "events": (PublishesEvents, ()),
}
_HOOK_MEMBERS = {"spool_parser": "spool", "routes": "routes", "start": "listener",
                 "stop": "listener", "normalize_identity": "identity",
                 "close_connections": "connections", "too_long": "limits",
                 "bind_events": "events"}


class AdapterError(ValueError):
    """An adapter that does not keep the contract: a start-up error naming what is wrong."""


def check_adapter(adapter: object) -> None:
    """Raise AdapterError unless `adapter` keeps the contract and its declared hooks."""
    name = getattr(adapter, "name", type(adapter).__name__)
    if not isinstance(adapter, ChannelAdapter):
        raise AdapterError(f"adapter {name!r} lacks name, capabilities, hooks or send")
    if not inspect.iscoroutinefunction(adapter.send):
        raise AdapterError(f"adapter {name!r}: send must be `async def`")
    hooks = set(adapter.hooks)
    unknown = hooks - set(HOOKS)
    if unknown:
        raise AdapterError(f"adapter {name!r} declares unknown hook(s) {sorted(unknown)}; "
                           f"known: {sorted(HOOKS)}")
    for hook in sorted(hooks):
        protocol, coroutines = HOOKS[hook]
        if not isinstance(adapter, protocol) or not all(
                inspect.iscoroutinefunction(getattr(adapter, m)) for m in coroutines):
            raise AdapterError(f"adapter {name!r} declares hook {hook!r} but does not "
                               f"implement {protocol.__name__}")
    for member, hook in _HOOK_MEMBERS.items():
        if hook not in hooks and getattr(adapter, member, None) is not None:
            raise AdapterError(f"adapter {name!r} has {member} but does not declare the "
                               f"{hook!r} hook: it would never be used")


class CannotListen(Exception):
    """A listener could not bind its address; the message names the address and the key."""


class DuplicateAdapterError(AdapterError):
    pass


class AdapterRegistry:
    """Adapters by unique name, each checked against the contract as it is registered."""

    def __init__(self) -> None:
        self._adapters: dict[str, ChannelAdapter] = {}

    def register(self, adapter: ChannelAdapter) -> None:
        check_adapter(adapter)
        if adapter.name in self._adapters:
            raise DuplicateAdapterError(f"adapter {adapter.name!r} is registered twice")
        self._adapters[adapter.name] = adapter

    def get(self, name: str) -> ChannelAdapter | None:
        return self._adapters.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._adapters

    def __iter__(self) -> Iterator[ChannelAdapter]:
        return iter(self._adapters.values())

    def names(self) -> list[str]:
        return sorted(self._adapters)

    def with_hook(self, hook: str) -> list[ChannelAdapter]:
        return [a for a in self._adapters.values() if hook in a.hooks]

    def spool_parsers(self) -> dict[str, RawOnlyParser]:
        """The spool parser of every adapter that spools, by channel."""
        return {a.name: a.spool_parser  # type: ignore[attr-defined]
                for a in self.with_hook("spool")}

    def acknowledging(self) -> set[str]:
        return self.capable(Capability.ACKNOWLEDGE)

    def capable(self, capability: Capability) -> set[str]:
        return {a.name for a in self._adapters.values() if capability in a.capabilities}

    def carries_attachments(self, channel: str) -> bool:
        """Whether staff may attach files to a reply on `channel` (Capability.ATTACHMENTS)."""
        adapter = self._adapters.get(channel)
        return adapter is not None and Capability.ATTACHMENTS in adapter.capabilities

    def too_long(self, channel: str, body: str) -> str | None:
        """Why `body` cannot be sent on `channel` (its "limits" hook), or None."""
        adapter = self._adapters.get(channel)
        if adapter is None or "limits" not in adapter.hooks:
            return None
        return adapter.too_long(body)  # type: ignore[attr-defined]


AdapterFactory = Callable[["Settings", bytes], ChannelAdapter]
"""(settings, reply secret) -> the adapter; called only when its channel is configured."""
