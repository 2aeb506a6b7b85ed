"""Text of an email body: charset-tolerant decoding, HTML to plain text, reply/signature stripping.

This module owns turning a body part into the strings the hub keeps: the full text and the
*new* text (the citizen's own words, without the quoted thread and the signature). Reply
stripping is delegated to mail-parser-reply (many languages), not to home-grown regexes.
Every function here takes time linear in its input and never raises on what a mail contains.
"""

from __future__ import annotations

import html
import logging
import re
from email.message import Message
from functools import lru_cache

import nh3
from mailparser_reply.constants import MAIL_LANGUAGES
from mailparser_reply.parser import EmailMessage

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
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
# HTML to text: html.parser is quadratic on unclosed tags before Python 3.11.13 (30 kB of "<a "
# took 8 s), so ammonia (nh3, linear) rewrites the HTML to text and block tags first; its
# output is regular enough for a regex. A mail's text lives in its first megabyte of HTML.
MAX_HTML_TEXT_CHARS = 1_000_000
_BLOCK_TAGS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6",
                         "blockquote", "pre", "table", "hr"})
_INVISIBLE_TAGS = frozenset({"script", "style", "head", "title"})
_TAG_RE = re.compile(r"<[^>]*>")


def clean(text: str | None) -> str | None:
    """Make any decoded string storable: no lone surrogates, no NUL/control characters.

    Parsing bytes with `email` maps undecodable header bytes to surrogate escapes, which every
    database driver refuses to encode; PostgreSQL text also refuses NUL.
    """
    if text is None:
        return None
    if _SURROGATE_RE.search(text):
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return _CONTROL_RE.sub("", text)


def ctype_of(part: Message) -> str:
    """`part.get_content_type()`, parsed once: policy.default re-parses the header on every
    call, and the walkers ask many times per part (it was most of the parse time)."""
    cached: str | None = getattr(part, "_hub_content_type", None)
    if cached is None:
        try:
            cached = part.get_content_type()
        except Exception:  # a header no policy can read: keep the part as an opaque file
            cached = "application/octet-stream"
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
        except (LookupError, ValueError):  # unknown codec, bad bytes, "undefined", NUL in name
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


def html_to_text(markup: str) -> str:
    """Plain text for an HTML-only mail, so rules and staff lists have words to work with."""
    try:
        blocks = nh3.clean(clean(markup[:MAX_HTML_TEXT_CHARS]) or "", tags=set(_BLOCK_TAGS),
                           clean_content_tags=set(_INVISIBLE_TAGS), attributes={},
                           strip_comments=True, link_rel=None)
    except Exception:  # never let display text break intake
        log.warning("HTML could not be read as text", exc_info=True)
        return ""
    # Only the block tags are left, without attributes; text has "<" and ">" escaped.
    text = clean(html.unescape(_TAG_RE.sub("\n", blocks))) or ""
    lines = (" ".join(line.split()) for line in text.splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# Every reply-header pattern of the library (a "... wrote:" line, a "From:/Sent:" block, a
# full-width colon in Chinese) holds a colon, except the separator line ("-----Original
# Message-----"). A text with none of these has no reply header: one reply, the whole text.
_HEADER_MARKS = (":", "\uff1a", "-----")
_NO_MATCH = re.compile(r"(?!)")


@lru_cache(maxsize=1)
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """The library's header, disclaimer and signature patterns, built once: it builds each
    pattern's source again for every message it reads (~0.1 ms a mail)."""
    built = EmailMessage(text="", languages=list(REPLY_LANGUAGES))
    return built.HEADER_REGEX, built.DISCLAIMERS_REGEX, built.SIGNATURE_REGEX


def _read(text: str) -> EmailMessage:
    headers, disclaimers, signatures = _patterns()
    if not any(mark in text for mark in _HEADER_MARKS):
        headers = _NO_MATCH  # scanning for the headers is most of the library's time
    return EmailMessage(text=text, languages=list(REPLY_LANGUAGES), _header_regex=headers,
                        _disclaimers_regex=disclaimers, _signature_regex=signatures).read()


def split_reply(full_text: str) -> tuple[str, str]:
    """(new text without quote and signature, new text with its signature).

    When the library finds no new text at all (a reply that is only a quote), the full text is
    returned instead, so that staff never see an empty message from a citizen.
    """
    head = full_text[:MAX_REPLY_PARSE_CHARS]
    try:
        replies = _read(head).replies
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
