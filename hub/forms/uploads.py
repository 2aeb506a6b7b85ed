"""What an uploaded file really is, told by its first bytes (magic numbers), never its name.

A citizen's browser sends a file name and a content type of its own choosing; both are kept
for staff but decide nothing. Only the types listed here can be accepted by a form.
"""

from __future__ import annotations

from collections.abc import Callable

Sniffer = Callable[[bytes], bool]


def _prefix(*magics: bytes) -> Sniffer:
    return lambda data: any(data.startswith(m) for m in magics)


def _riff(kind: bytes) -> Sniffer:
    return lambda data: data[:4] == b"RIFF" and data[8:12] == kind


def _iso_brand(*brands: bytes) -> Sniffer:
    return lambda data: data[4:8] == b"ftyp" and data[8:12] in brands


SNIFFERS: dict[str, Sniffer] = {
    "image/jpeg": _prefix(b"\xff\xd8\xff"),
    "image/png": _prefix(b"\x89PNG\r\n\x1a\n"),
    "image/gif": _prefix(b"GIF87a", b"GIF89a"),
    "image/webp": _riff(b"WEBP"),
    "image/heic": _iso_brand(b"heic", b"heix", b"mif1", b"msf1"),
    "application/pdf": _prefix(b"%PDF-"),
    "video/mp4": _iso_brand(b"isom", b"iso2", b"mp41", b"mp42", b"avc1"),
}
SNIFFABLE = frozenset(SNIFFERS)


def sniff(data: bytes) -> str | None:
    """The content type `data` starts like, or None when it is none of the known ones."""
    return next((ctype for ctype, test in SNIFFERS.items() if test(data)), None)
