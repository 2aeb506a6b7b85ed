"""Which chat visitors are here: connected now, or gone for less than `away_after_seconds`.

A staff reply to a visitor who is away goes out by email or SMS when they gave an address
(hub.outbound asks through `is_here`). Each process counts its own connections per visitor and
when the last one closed. With `[redis] url` every process also keeps one key per visitor,
`{prefix}:webchat:here:{visitor}`, set while connected (refreshed every `REFRESH_SECONDS`, so a
process that dies drops out) and left to expire `away_after_seconds` after the last connection
closed; any process then answers "is this visitor here?" for every other. While Redis is away a
process answers from its own connections.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

from hub.soft_redis import SoftRedis

log = logging.getLogger(__name__)
REFRESH_SECONDS = 15.0


class VisitorPresence:
    def __init__(self, away_after: float, redis_url: str = "", prefix: str = "hub") -> None:
        self.away_after = away_after
        self.redis_url = redis_url
        self.prefix = prefix
        self.connected: Counter[str] = Counter()
        self.left_at: dict[str, float] = {}  # visitor -> time.monotonic() of the last close
        self._shared = SoftRedis(redis_url, "chat presence")
        self._refresher: asyncio.Task[None] | None = None

    def _key(self, visitor: str) -> str:
        return f"{self.prefix}:webchat:here:{visitor}"

    async def arrive(self, visitor: str) -> None:
        self.connected[visitor] += 1
        self.left_at.pop(visitor, None)
        if self.connected[visitor] == 1:
            await self._redis("set", self._key(visitor), b"1",
                              ex=int(REFRESH_SECONDS * 3 + self.away_after))
        if self.redis_url and (self._refresher is None or self._refresher.done()):
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_forever())

    async def leave(self, visitor: str) -> None:
        if self.connected[visitor] <= 0:
            return
        self.connected[visitor] -= 1
        if self.connected[visitor] > 0:
            return
        del self.connected[visitor]
        self.left_at[visitor] = time.monotonic()
        if len(self.left_at) > 10_000:  # long gone visitors are away by any measure
            cutoff = time.monotonic() - self.away_after
            self.left_at = {v: t for v, t in self.left_at.items() if t > cutoff}
        if self.away_after >= 1:
            await self._redis("set", self._key(visitor), b"1", ex=int(self.away_after))
        else:
            await self._redis("delete", self._key(visitor))

    async def is_here(self, visitor: str) -> bool:
        if self.connected[visitor] > 0:
            return True
        left = self.left_at.get(visitor)
        if left is not None and time.monotonic() - left < self.away_after:
            return True
        return bool(await self._redis("exists", self._key(visitor)))

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)
        await self._shared.close()
        self._refresher = None

    async def _refresh_forever(self) -> None:
        while self.connected:
            await asyncio.sleep(REFRESH_SECONDS)
            ttl = int(REFRESH_SECONDS * 3 + self.away_after)
            for visitor in list(self.connected):
                await self._redis("set", self._key(visitor), b"1", ex=ttl)

    async def _redis(self, command: str, *args: Any, **options: Any) -> Any:
        return await self._shared.call(command, *args, **options)
