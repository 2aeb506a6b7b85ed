"""Who is calling the staff API: bearer-token authentication, role gates and rate limits.

`guarded(handler, roles)` wraps an API handler: no or bad token is 401 with `WWW-Authenticate:
Bearer`, a token over its rate is 429 with `Retry-After`, a role outside `roles` is 403. The caller
is then available to the handler as `caller(request)`. Refused credentials are rate-limited too,
per client address and at the same rate, so that guessing or flooding with bad tokens ends in 429
without touching the database.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from aiohttp import web
from sqlalchemy import or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from hub.auth import staff_for_token, token_digest
from hub.model import utcnow
from hub.storage.tables import ApiToken, Staff
from hub.web.addresses import client_key
from hub.web.errors import json_error
from hub.web.keys import CALLER_KEY, HUB_KEY, SESSION_KEY, Caller

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TOUCH_EVERY = timedelta(minutes=5)  # how often a token's last_used_at is written back
# RFC 6750's b64token, at most as long as staff_for_token looks at: anything else (such as header
# bytes that are not UTF-8) cannot be a token and never reaches the database
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9._~+/=-]{1,128}")




class RateLimiter:
    """A token bucket per API token: `per_minute` requests, refilled continuously."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._swept = -math.inf

    def take(self, key: str) -> float:
        """0 when allowed, else the seconds to wait before the next request may pass."""
        now = self._clock()
        tokens, at = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens - 1.0, now)
        # clients choose address keys, so a sweep (a pass over every bucket) is rationed
        if len(self._buckets) > 10_000 and now - self._swept >= 1.0:
            self._swept = now
            self._forget_full(now)
        return 0.0

    def _forget_full(self, now: float) -> None:
        full_after = self.capacity / self.rate
        for key, (_, at) in list(self._buckets.items()):
            if now - at >= full_after:
                del self._buckets[key]


LIMITER_KEY: web.AppKey[RateLimiter] = web.AppKey("api_rate_limiter", RateLimiter)
TOUCHED_KEY: web.AppKey[dict[str, datetime]] = web.AppKey("api_token_touched", dict)


def install(app: web.Application, per_minute: int) -> None:
    app[LIMITER_KEY] = RateLimiter(per_minute)
    app[TOUCHED_KEY] = {}


def _unauthorized(message: str, error: str | None = None) -> web.Response:
    challenge = 'Bearer realm="hub"' + (f', error="{error}"' if error else "")
    return json_error(401, "unauthorized", message, headers={"WWW-Authenticate": challenge})


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def refused(request: web.Request) -> web.Response | None:
    """Count a refused credential against the client's address: the 429 once it is over its
    rate, else None (the caller answers 401 or 403)."""
    wait = request.app[LIMITER_KEY].take(client_key(request))
    if wait <= 0:
        return None
    return _too_many(wait, "too many refused requests from this address")


def _too_many(wait: float, message: str) -> web.Response:
    return json_error(429, "rate_limited", message,
                      headers={"Retry-After": str(max(1, math.ceil(wait)))})


async def _authenticate(request: web.Request, token: str) -> Caller | None:
    shared = request.get(SESSION_KEY)
    if shared is not None:
        staff = await _staff(shared, token)
    else:
        async with request.app[HUB_KEY].db.read() as session:
            staff = await _staff(session, token)
    if staff is None:
        return None
    digest = token_digest(token)
    await _touch(request, digest)
    return Caller(staff=staff, token_hash=digest)


async def _staff(session: AsyncSession, token: str) -> Staff | None:
    """The token's staff member as a detached row (see Caller)."""
    staff = await staff_for_token(session, token)
    if staff is not None:
        session.expunge(staff)
    return staff


async def _touch(request: web.Request, digest: str) -> None:
    """Record last use at most every TOUCH_EVERY per token and process, so reads stay reads."""
    now = utcnow()
    touched = request.app[TOUCHED_KEY]
    last = touched.get(digest)
    if last is not None and now - last < TOUCH_EVERY:
        return
    touched[digest] = now
    if len(touched) > 10_000:
        touched.clear()
    async with request.app[HUB_KEY].db.transaction() as session:
        await session.execute(
            update(ApiToken).where(ApiToken.token_hash == digest,
                                   or_(ApiToken.last_used_at.is_(None),
                                       ApiToken.last_used_at < now - TOUCH_EVERY))
            .values(last_used_at=now))


@asynccontextmanager
async def reading(request: web.Request) -> AsyncIterator[AsyncSession]:
    """A read session for a handler: the one its caller was authenticated with, when the route
    is guarded with `reads`, else a new one."""
    session = request.get(SESSION_KEY)
    if session is not None:
        yield session
    else:
        async with request.app[HUB_KEY].db.read() as session:
            yield session


def guarded(handler: Handler, roles: Collection[str] | None = None, *,
            reads: bool = False) -> Handler:
    """Authenticate, rate-limit and role-check before `handler` runs. With `reads` (a handler
    that reads and answers, never one that holds its request open), the token's look-up and
    the handler's reads (`reading`) share one session: one connection, one transaction."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        if not reads:
            return await checked(request)
        async with request.app[HUB_KEY].db.read() as session:
            request[SESSION_KEY] = session
            try:
                return await checked(request)
            finally:
                del request[SESSION_KEY]

    async def checked(request: web.Request) -> web.StreamResponse:
        token = _bearer(request)
        if token is None:
            return refused(request) or _unauthorized(
                "an API token is required: Authorization: Bearer <token>")
        who = await _authenticate(request, token) if TOKEN_SHAPE.fullmatch(token) else None
        if who is None:
            return refused(request) or _unauthorized(
                "the API token is not valid or has been revoked", "invalid_token")
        wait = request.app[LIMITER_KEY].take(who.token_hash)
        if wait > 0:
            return _too_many(wait, "too many requests for this token")
        if roles is not None and who.role not in roles:
            return json_error(403, "forbidden", f"this needs the role {' or '.join(roles)}")
        request[CALLER_KEY] = who
        return await handler(request)

    return wrapper
