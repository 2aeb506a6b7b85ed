"""Visitor ids and the signed tokens the widget keeps (`hub_chat_token` in the iframe's storage).

A token is `v1.<visitor id>.<issued, epoch seconds>.<signature>`, the signature an HMAC of the
rest with the hub's secret. Holding a token is what makes a browser that visitor: a reload or a
new tab resumes their conversation; another browser has no token and becomes a new visitor. A
token that is malformed, forged or older than `MAX_AGE` is ignored (a fresh visitor), never an
error: the widget cannot do anything about it but start again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time

MAX_AGE = 90 * 24 * 3600  # seconds; a visitor back after three months starts afresh
VISITOR_RE = re.compile(r"^v[A-Za-z0-9_-]{20}$")  # within the identity rule (hub.identities)
_PREFIX = "v1"


def new_visitor_id() -> str:
    return "v" + secrets.token_urlsafe(15)  # 20 characters of base64url, 120 bits


def _signature(secret: bytes, payload: str) -> str:
    digest = hmac.new(secret, f"webchat-visitor:{payload}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode().rstrip("=")


def make_token(visitor: str, secret: bytes, *, now: float | None = None) -> str:
    payload = f"{_PREFIX}.{visitor}.{int(time.time() if now is None else now)}"
    return f"{payload}.{_signature(secret, payload)}"


def verify_token(token: object, secret: bytes, *, now: float | None = None) -> str | None:
    """The visitor id a genuine, unexpired token names; None for anything else."""
    if not isinstance(token, str) or len(token) > 200:
        return None
    payload, _, signature = token.rpartition(".")
    parts = payload.split(".")
    if len(parts) != 3 or parts[0] != _PREFIX or not VISITOR_RE.match(parts[1]):
        return None
    # Bytes, not str: compare_digest raises on a str with non-ASCII characters, and a
    # forged token must be a fresh visitor, never an error.
    if not hmac.compare_digest(signature.encode(), _signature(secret, payload).encode()):
        return None
    try:
        issued = int(parts[2])
    except ValueError:
        return None
    age = (time.time() if now is None else now) - issued
    return parts[1] if age + 300 >= 0 and age <= MAX_AGE else None
