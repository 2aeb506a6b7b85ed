"""Signed conversation tokens (email reply threading) and unguessable citizen references.

A reply token names a conversation and carries an HMAC so that a stranger cannot forge one for
somebody else's conversation. The format is plain lower-case letters and digits with one dash,
so it survives plus-addressing and Message-ID local parts: `c<id base36>-<12 base32 chars>`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

TOKEN_RE = re.compile(r"\bc([0-9a-z]{1,13})-([a-z2-7]{12})\b")
REFERENCE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read aloud on the phone
REFERENCE_LENGTH = 10  # 31**10 ~ 8e14: unguessable for a tracking page with rate limits
REFERENCE_RE = re.compile(rf"\[#([A-Z2-9]{{{REFERENCE_LENGTH}}})\]")
# A reference quoted without its brackets ("Re: noise EPNGY3C62Q"): only the alphabet's letters,
# standing alone. A word that merely looks like one finds nothing: the intake accepts a
# reference only from the conversation's own contact.
BARE_REFERENCE_RE = re.compile(rf"(?<![A-Za-z0-9])([A-HJKMNP-Z2-9]{{{REFERENCE_LENGTH}}})(?![A-Za-z0-9])")


def new_reference() -> str:
    return "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(REFERENCE_LENGTH))


def _signature(conversation_id: int, secret: bytes) -> str:
    mac = hmac.new(secret, f"conversation:{conversation_id}".encode(), hashlib.sha256).digest()
    return base64.b32encode(mac).decode("ascii").lower()[:12]


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rem = divmod(number, 36)
        out = digits[rem] + out
        if number == 0:
            return out


def make_reply_token(conversation_id: int, secret: bytes) -> str:
    return f"c{_base36(conversation_id)}-{_signature(conversation_id, secret)}"


def find_tokens(text: str) -> list[str]:
    """Every token-shaped string in a header or address, in order (not yet verified)."""
    return [m.group(0) for m in TOKEN_RE.finditer(text.lower())]


def verify_reply_token(token: str, secret: bytes) -> int | None:
    """The conversation id a genuine token names, or None for a forged or malformed one."""
    match = TOKEN_RE.fullmatch(token.strip().lower())
    if not match:
        return None
    conversation_id = int(match.group(1), 36)
    if hmac.compare_digest(match.group(2), _signature(conversation_id, secret)):
        return conversation_id
    return None
