"""Content-addressed files for attachments: one copy per distinct content, written durably."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def _put_sync(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self.path_for(digest)
        if target.exists():
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{digest}.{os.getpid()}.tmp")
        # fsync before the row commits: an acknowledged attachment must survive a crash.
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
        return digest

    async def put(self, data: bytes) -> str:
        return await asyncio.to_thread(self._put_sync, data)

    def get_sync(self, sha256: str) -> bytes:
        return self.path_for(sha256).read_bytes()

    async def get(self, sha256: str) -> bytes:
        return await asyncio.to_thread(self.get_sync, sha256)
