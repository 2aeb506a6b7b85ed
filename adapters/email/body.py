"""Text of an email body: charset-tolerant decoding, HTML to plain text, reply/signature stripping.

This module owns turning a body part into the strings the hub keeps: the full text and the
*new* text (the citizen's own words, without the quoted thread and the signature). Reply
stripping is delegated to mail-parser-reply (many languages), not to home-grown regexes.
"""

from __future__ import annotations

import logging
import re
from email.message import Message
from functools import lru_cache
from html.parser import HTMLParser

from mailparser_reply import EmailReplyParser
from mailparser_reply.constants import MAIL_LANGUAGES

log = logging.getLogger(__name__)

# mail-parser-reply's "languages" are header/signature vocabularies; "david" is a vendor format,
# not a language, and is kept out (its pattern is slow and rarely useful).
REPLY_LANGUAGES: tuple[str, ...] = tuple(lang for lang in MAIL_LANGUAGES if lang != "david")
# The reply parser is regex based; an enormous body (a pasted log file) costs seconds. Only its
# head can hold the new text anyway.
MAX_REPLY_PARSE_CHARS = 100_000
# Declared charsets that lie: mail says us-ascii or nothing and carries UTF-8 or Windows-1252.
_FALLBACK_CHARSETS = ("utf-8", "cp1252")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean(text: str | None) -> str | None:
    """Make any decoded string storable: no lone surrogates, no NUL/control characters.

    Parsing bytes with `email` maps undecodable header bytes to surrogate escapes, which every
    database driver refuses to encode; PostgreSQL text also refuses NUL.
    """
    if text is None:
        return None
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return _CONTROL_RE.sub("", text)


def ctype_of(part: Message) -> str:
    """`part.get_content_type()`, parsed once: policy.default re-parses the header on every
    call, and the walkers ask many times per part (it was most of the parse time)."""
    cached: str | None = getattr(part, "_hub_content_type", None)
    if cached is None:
        cached = part.get_content_type()
        part._hub_content_type = cached  # type: ignore[attr-defined]
    return cached


def maintype(part: Message) -> str:
    return ctype_of(part).partition("/")[0]


def decode_part(part: Message) -> str:
    """The text of a leaf part, whatever its transfer encoding and (declared) charset.

    Line ends become "\\n": mail arrives with CRLF, and regexes (ours and the reply parser's)
    anchor on "\\n".
    """
    text = _decode_payload(part)
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _decode_payload(part: Message) -> str:
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # a broken transfer encoding: keep what the sender wrote
        payload = str(part.get_payload()).encode("utf-8", "surrogateescape")
    if not isinstance(payload, bytes):
        return ""
    declared = _declared_charset(part)
    for charset in (declared, *_FALLBACK_CHARSETS):
        if charset is None:
            continue
        try:
            return clean(payload.decode(charset)) or ""
        except (LookupError, UnicodeDecodeError):
            continue
    return clean(payload.decode("utf-8", "replace")) or ""


def _declared_charset(part: Message) -> str | None:
    try:
        charset = part.get_content_charset()
    except Exception:  # a non-ASCII or otherwise broken parameter
        return None
    if charset in (None, "us-ascii", "ascii"):
        # 8-bit bytes under "us-ascii" are common; try UTF-8 first, the declared codec after.
        return None
    return charset


class _TextExtractor(HTMLParser):
    """Visible text of an HTML body with line breaks at block elements."""

    _BLOCKS = frozenset(
        {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre",
         "table", "hr"}
    )
    _SKIP = frozenset({"script", "style", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Plain text for an HTML-only mail, so rules and staff lists have words to work with."""
    extractor = _TextExtractor()
    try:
        extractor.feed(html)
        extractor.close()
    except Exception:  # HTMLParser is lenient, but never let display text break intake
        return ""
    lines = (" ".join(line.split()) for line in "".join(extractor.parts).splitlines())
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


@lru_cache(maxsize=1)
def _parser() -> EmailReplyParser:
    return EmailReplyParser(languages=list(REPLY_LANGUAGES))


def split_reply(full_text: str) -> tuple[str, str]:
    """(new text without quote and signature, new text with its signature).

    When the library finds no new text at all (a reply that is only a quote), the full text is
    returned instead, so that staff never see an empty message from a citizen.
    """
    head = full_text[:MAX_REPLY_PARSE_CHARS]
    try:
        replies = _parser().read(head).replies
    except Exception:  # the library is third-party code: fail open to the full text
        log.warning("reply stripping failed; keeping the full text", exc_info=True)
        return full_text.strip(), full_text.strip()
    if not replies:
        return full_text.strip(), full_text.strip()
    latest = replies[0]
    with_signature = _drop_quoted(latest.full_body.strip())
    body = _drop_quoted(latest.body.strip())
    if not body:
        body = with_signature or full_text.strip()
    return body, with_signature or body


def _drop_quoted(text: str) -> str:
    """Remove ">"-quoted lines and the attribution line(s) introducing each quoted block.

    A safety net under the library: for reply headers in languages it does not know (Russian
    "... написал:"), bottom-posting (Thunderbird) and inline answers. Quote marks are
    language-neutral, and a quoted line is by definition not new text.
    """
    lines = text.splitlines()
    keep = [not line.lstrip().startswith(">") for line in lines]
    for index, _line in enumerate(lines):
        if keep[index] or index == 0 or not keep[index - 1]:
            continue
        # The first line of a quoted block: drop the attribution just above it.
        above = index - 1
        while above >= 0 and not lines[above].strip():
            above -= 1
        if above >= 0 and lines[above].rstrip().endswith(":"):
            keep[above] = False
            while above > 0 and lines[above - 1].rstrip().endswith(("<", ",")):
                above -= 1
                keep[above] = False
    kept = "\n".join(line for line, k in zip(lines, keep, strict=True) if k)
    return re.sub(r"\n{3,}", "\n\n", kept).strip() or text
