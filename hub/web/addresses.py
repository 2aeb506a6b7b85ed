"""Where a request comes from: the client's address, and whether it is in an allow-list.

The peer address is the client unless the peer is one of `[http] trusted_proxies`; then the
right-most `X-Forwarded-For` hop that is not a trusted proxy is. Hops left of it are whatever the
client chose to send, so they are never believed. Lists are validated at config load
(hub.config), so parsing them here cannot fail.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
TRUSTED_PROXIES_KEY: web.AppKey[tuple[Network, ...]] = web.AppKey("trusted_proxies", tuple)


def networks(entries: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _address(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # so that 127.0.0.1/8 also matches ::ffff:127.0.0.1
    return address


def within(address: Address | None, allowed: Iterable[Network]) -> bool:
    return address is not None and any(address in network for network in allowed)


def client_address(request: web.Request) -> Address | None:
    """The client's address; None when the peer is not an IP endpoint (a unix socket)."""
    trusted = request.app.get(TRUSTED_PROXIES_KEY, ())
    peer = _address(request.remote or "")
    if not within(peer, trusted):
        return peer
    hops = [hop for value in request.headers.getall("X-Forwarded-For", [])
            for hop in value.split(",")]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            return peer  # a hop we cannot read: stop believing the chain there
        if not within(address, trusted):
            return address
    return peer


def client_key(request: web.Request) -> str:
    """A rate-limit key for the client's address (unknown peers share one key). IPv6 counts by
    /64: one host usually holds the whole network, and could otherwise take a new key per
    request."""
    address = client_address(request)
    if isinstance(address, ipaddress.IPv6Address):
        return f"addr:{ipaddress.IPv6Network((address, 64), strict=False)}"
    return f"addr:{address}" if address is not None else "addr:unknown"
