"""A Redis that may be away: what presence (staff and chat visitors) shares between processes.

Each command is tried once with short time-outs; without `[redis] url`, or while Redis does not
answer, it returns None and the caller falls back on this process's own knowledge, so a Redis
that hangs never holds up a socket, an intake batch or a reply's transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 2.0


class SoftRedis:
    def __init__(self, url: str, what: str) -> None:
        self.url = url
        self.what = what  # named in the warning when Redis is away
        self._client: Any = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    async def call(self, command: str, *args: Any, **options: Any) -> Any:
        """One Redis command's answer; None without Redis or while it is away."""
        if not self.url:
            return None
        try:
            return await getattr(self._connection(), command)(*args, **options)
        except Exception as exc:
            log.warning("%s not shared through Redis: %s", self.what, type(exc).__name__)
            return None

    async def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()
        self._client = None

    def _connection(self) -> Any:
        from redis.asyncio import Redis

        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:  # a client serves one loop
            self._client = Redis.from_url(self.url, socket_connect_timeout=TIMEOUT_SECONDS,
                                          socket_timeout=TIMEOUT_SECONDS)
            self._client_loop = loop
        return self._client
