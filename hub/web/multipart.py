"""Multipart bodies read part by part against one byte budget for the whole request, so an
upload is capped while it arrives, not after it was buffered (citizen forms, staff replies).
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import BodyPartReader

CHUNK = 64 * 1024


class ReadBudget:
    """Bytes a request may still send; past `limit`, `too_large(limit, used)` is raised."""

    def __init__(self, limit: int, too_large: Callable[[int, int], Exception]) -> None:
        self.limit, self.used = limit, 0
        self._too_large = too_large

    def spend(self, n: int) -> None:
        self.used += n
        if self.used > self.limit:
            raise self._too_large(self.limit, self.used)


async def read_part(part: BodyPartReader, keep: int, budget: ReadBudget) -> bytes:
    """The part's first `keep` bytes; the rest is read against the budget (so the client is not
    cut off) and dropped."""
    kept = bytearray()
    while chunk := await part.read_chunk(CHUNK):
        budget.spend(len(chunk))
        if len(kept) < keep:
            kept += chunk[:keep - len(kept)]
    return bytes(kept)
