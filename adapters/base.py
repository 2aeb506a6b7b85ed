"""The adapter boundary: the protocol every channel implements, its capability flags and errors.

An adapter knows its provider and nothing of storage or routing. Inbound, it hands
`InboundMessage`s to an `IntakeSink`, or commits the raw payload to a `SpoolSink` first and
parses it later in `parse_spooled` (where parsing costs more than the acknowledgment should
wait); outbound, a delivery job calls `send` and reads the adapter's transient/permanent
verdict from the exception it raises.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from hub.model import (
    Accepted,
    InboundMessage,
    OutboundMessage,
    SendResult,
    SpoolItem,
    SpoolReceipt,
)
from hub.spool import RawOnlyParser

if TYPE_CHECKING:
    from aiohttp import web


class Capability(enum.Flag):
    NONE = 0
    ATTACHMENTS = enum.auto()
    HTML = enum.auto()
    DELIVERY_STATUS = enum.auto()  # the provider reports delivered/failed after the send
    THREADING = enum.auto()
    IDEMPOTENT_SEND = enum.auto()  # the provider dedupes by our idempotency key


class DeliveryError(Exception):
    """Base of send failures; `transient` decides retry versus dead letter."""

    transient: bool = True

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class TransientError(DeliveryError):
    """Try again later: network trouble, provider 4xx-temporary/5xx, rate limits."""

    transient = True


class PermanentError(DeliveryError):
    """Will never work: invalid recipient, rejected content. The item goes to dead letter."""

    transient = False


class IntakeSink(Protocol):
    async def accept(self, msg: InboundMessage) -> Accepted: ...


class SpoolSink(Protocol):
    """Commits what was received, as received, so the channel can acknowledge before parsing."""

    async def put(self, item: SpoolItem) -> SpoolReceipt: ...


@runtime_checkable
class Spooling(Protocol):
    """An adapter that spools its raw input turns a spooled payload back into a message later.

    `spool_parser` runs in a parse process, so it must be picklable (a module-level class or
    function with plain settings). It must not raise for bad input (a malformed payload
    becomes a flagged message); its `raw_only` keeps a payload whose full parse overran the
    time budget or crashed."""

    name: str
    spool_parser: RawOnlyParser


def spool_parsers(adapters: Iterable[object]) -> dict[str, RawOnlyParser]:
    """The spool parser of every adapter that spools, by channel."""
    return {a.name: a.spool_parser for a in adapters if isinstance(a, Spooling)}


@runtime_checkable
class ChannelAdapter(Protocol):
    """What the hub needs of a channel. Optional abilities are `capabilities`, not stub methods."""

    name: str  # the conversation channel value it serves: "email", "sms", ...
    capabilities: Capability

    def send(self, msg: OutboundMessage) -> SendResult:
        """Deliver one message. Runs inside a worker job (a thread), so it may block."""
        ...


class ServesHttp(Protocol):
    """An adapter that receives webhooks mounts its routes on the hub's aiohttp app."""

    def routes(self, intake: IntakeSink) -> Iterable[web.RouteDef]: ...


class RunsOnLoop(Protocol):
    """An adapter with its own listener (SMTP server, Telegram polling) started with the hub."""

    async def start(self, intake: IntakeSink, spool: SpoolSink) -> list[str]:
        """Start listening; return human-readable addresses for the start-up banner."""
        ...

    async def stop(self) -> None: ...


class DuplicateAdapterError(ValueError):
    pass


class AdapterRegistry:
    """Adapters by unique name; a second adapter with a taken name is a start-up error."""

    def __init__(self) -> None:
        self._adapters: dict[str, ChannelAdapter] = {}

    def register(self, adapter: ChannelAdapter) -> None:
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


AdapterFactory = Callable[[Any], ChannelAdapter | None]
