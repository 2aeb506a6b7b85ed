"""What a text looks like on a phone: staff HTML and markdown flattened to plain text, and how
many SMS segments it takes (GSM-7 or UCS-2). No provider library here: the hub may use it to
refuse a reply that is too long before it is queued."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

# The GSM 03.38 default alphabet and its extension table (each extension char costs two septets).
_GSM7 = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNO"
            "PQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
_GSM7_EXT = set("^{}\\[~]|€\f")
_TAG = re.compile(r"<[^>]*>")
_BLOCK_END = re.compile(r"</(p|div|li|h[1-6]|tr)\s*>|<br\s*/?>", re.IGNORECASE)
_MARKDOWN = re.compile(r"(\*\*|__|`)(.+?)\1")


@dataclass(frozen=True, slots=True)
class Segments:
    count: int
    encoding: str  # "GSM-7" | "UCS-2"
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)


def segments(text: str) -> Segments:
    """How many SMS segments a text takes: GSM-7 when every character is in the GSM alphabet
    (160 septets in one segment, 153 per segment when concatenated), else UCS-2 (70 UTF-16
    units, 67 when concatenated)."""
    if all(c in _GSM7 or c in _GSM7_EXT for c in text):
        units = sum(2 if c in _GSM7_EXT else 1 for c in text)
        single, multi, encoding = 160, 153, "GSM-7"
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, multi, encoding = 70, 67, "UCS-2"
    count = 1 if units <= single else -(-units // multi)
    return Segments(count, encoding, units)


def sms_text(body: str, html_body: str | None = None) -> str:
    """Plain text for a phone: HTML flattened, markdown emphasis dropped, blank runs squeezed."""
    text = body
    if not text.strip() and html_body:
        text = html.unescape(_TAG.sub("", _BLOCK_END.sub("\n", html_body)))
    text = _MARKDOWN.sub(r"\2", text)
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
