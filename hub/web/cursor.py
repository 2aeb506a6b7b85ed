"""Opaque, signed pagination cursors for keyset paging.

A cursor is base64url(JSON position) + "." + a truncated HMAC-SHA256 over it, keyed from the hub's
secret and the list it belongs to, so a client cannot forge a position nor replay one list's
cursor on another. Anything that does not verify is a 400, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

from hub.web.errors import ApiError


def _key(secret: bytes, kind: str) -> bytes:
    return hmac.new(secret, b"api-cursor:" + kind.encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode(secret: bytes, kind: str, position: dict[str, Any]) -> str:
    payload = _b64(json.dumps(position, separators=(",", ":"), sort_keys=True).encode())
    mac = hmac.new(_key(secret, kind), payload.encode(), hashlib.sha256).digest()[:16]
    return f"{payload}.{_b64(mac)}"


def decode(secret: bytes, kind: str, cursor: str) -> dict[str, Any]:
    bad = ApiError(400, "bad_cursor", "cursor is not valid; use next_cursor from a previous page")
    payload, dot, mac_text = cursor.partition(".")
    if not dot:
        raise bad
    expected = hmac.new(_key(secret, kind), payload.encode(), hashlib.sha256).digest()[:16]
    try:
        mac = _unb64(mac_text)
        if not hmac.compare_digest(mac, expected):
            raise bad
        position = json.loads(_unb64(payload))
    except (binascii.Error, ValueError):
        raise bad from None
    if not isinstance(position, dict):
        raise bad
    return position


def encode_time_id(secret: bytes, kind: str, at: datetime, row_id: int) -> str:
    return encode(secret, kind, {"t": at.isoformat(), "i": row_id})


def decode_time_id(secret: bytes, kind: str, cursor: str) -> tuple[datetime, int]:
    position = decode(secret, kind, cursor)
    try:
        at = datetime.fromisoformat(str(position["t"]))
        row_id = position["i"]
    except (KeyError, ValueError):
        raise ApiError(400, "bad_cursor", "cursor is not valid") from None
    if not isinstance(row_id, int) or at.tzinfo is None:
        raise ApiError(400, "bad_cursor", "cursor is not valid")
    return at, row_id
