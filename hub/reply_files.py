"""Files staff attach to a reply: what may be sent (how many, how big, which types) and the
name it goes out under. Checked before anything is stored or queued; hub.service.reply then
stores the files like inbound attachments (content-addressed blobs, `attachments` rows) and
links them to the outbound message in the reply's own transaction.

A file's type is told by its content (hub.forms.uploads, as for citizens' uploads), never by
its name or the browser's word, so nothing a staff member's machine mislabels (or a crafted
file) reaches a citizen under a type it is not. The name is kept for the citizen, made safe:
no path, no control characters, at most MAX_NAME characters, and an extension that matches
the content.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from urllib.parse import unquote

from hub.forms.uploads import sniff
from hub.model import OutboundAttachment
from hub.service import Invalid

MAX_REPLY_FILES = 5
MAX_NAME = 120
# What a reply may carry: what every carrying channel shows (mail clients, Telegram, the chat).
REPLY_TYPES: dict[str, str] = {
    "application/pdf": "pdf", "image/jpeg": "jpg", "image/png": "png", "image/gif": "gif",
    "image/webp": "webp",
}
_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]+')


def safe_filename(name: str, content_type: str) -> str:
    """`name` without path or control characters, ending in the content's own extension."""
    # Some clients percent-encode the name they send (aiohttp's own does): read it as meant.
    name = unicodedata.normalize("NFC", unquote(name)).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = _UNSAFE.sub("_", name).strip(" .")
    stem, dot, ext = name.rpartition(".")
    wanted = REPLY_TYPES[content_type]
    if not dot or ext.lower() not in {wanted, "jpeg" if wanted == "jpg" else wanted}:
        stem = name  # keep what was there; the real type's extension follows
    stem = stem[:MAX_NAME - len(wanted) - 1].strip(" .") or "attachment"
    return f"{stem}.{wanted}"


def size_label(n: int) -> str:
    return f"{n / 1_048_576:.1f} MB" if n >= 1_048_576 else f"{max(1, n // 1024)} KB"


def checked_files(files: Sequence[tuple[str, bytes]], max_bytes: int) -> list[OutboundAttachment]:
    """(name as sent, content) pairs -> the attachments to send; empty parts (a file input left
    empty) are dropped. Raises Invalid (`too_many_attachments`, `attachment_too_large`,
    `attachment_type`) naming the file; nothing is kept of a refused set."""
    files = [(name, data) for name, data in files if data]
    if len(files) > MAX_REPLY_FILES:
        raise Invalid(f"attachment: at most {MAX_REPLY_FILES} files can be sent with a reply",
                      "too_many_attachments")
    kept = []
    for name, data in files:
        shown = _UNSAFE.sub("_", name)[:MAX_NAME] or "attachment"
        if len(data) > max_bytes:
            raise Invalid(f"attachment: {shown} is larger than {size_label(max_bytes)}",
                          "attachment_too_large")
        content_type = sniff(data)
        if content_type not in REPLY_TYPES:
            raise Invalid(f"attachment: {shown} is not a PDF or an image (PNG, JPEG, GIF, "
                          "WebP)", "attachment_type")
        kept.append(OutboundAttachment(safe_filename(name or "attachment", content_type),
                                       content_type, data))
    return kept
