"""Raw RFC 5322 bytes -> one `InboundMessage`; never raises, in time bounded by the mail's size.

This module owns the mapping from a mail to the hub's vocabulary: sender identity, recipient
(and the inbox it names), dedupe key, thread hints (Message-ID references, our plus-address
reply token, the `[#REF]` subject reference), new/full/HTML text, capped attachments, the
automatic-mail verdict and delivery reports. Any mail, however broken, becomes a message.

It also owns the MIME caps: a mail nested deeper than `MAX_MIME_DEPTH` or with more than
`MAX_MIME_PARTS` parts is not parsed in full (the stdlib parser recurses per level and builds
an object per part). Such a mail, and any mail the full parse cannot handle, is kept
*raw-only*: identity, subject and thread hints from a header-only parse, the text where it can
be had cheaply, the flag "malformed" plus the reason, and always the raw bytes.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from email import errors as email_errors
from email import policy
from email.header import decode_header, make_header
from email.headerregistry import BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from email.policy import Compat32, EmailPolicy
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from functools import lru_cache
from typing import Any, TypeVar

from hub.model import (
    DeliveryReport,
    DroppedAttachment,
    InboundAttachment,
    InboundMessage,
    ThreadHints,
    utcnow,
)
from hub.tokens import BARE_REFERENCE_RE, REFERENCE_RE, find_tokens, verify_reply_token

from .body import clean, ctype_of, decode_part, html_to_text, maintype, split_reply
from .loops import automatic_reasons
from .status import parse_delivery_report

log = logging.getLogger(__name__)
_T = TypeVar("_T")

CHANNEL = "email"
UNKNOWN_SENDER = "unknown@invalid"
MAX_REFS = 50
# Real mail nests 2-4 levels (mixed > alternative > related) and a forwarded message adds 2-3
# more; the corpus peaks at 8. 32 leaves room for a chain of forwards, while the stdlib parser
# and generator, which recurse per level, stay far below the interpreter's recursion limit
# (1,000 levels: seconds of parsing, then RecursionError).
MAX_MIME_DEPTH = 32
# Attachments are capped at 50 and a body adds 2-5 parts (the corpus peaks at ~20). Every part
# is a message object with parsed headers: ~0.3 ms each, a few ms with hostile headers, so
# 250 parts keep one mail well under a second.
MAX_MIME_PARTS = 250
# CPython's structured header parser is quadratic in a header's length (1 kB of "(a)" comments
# in a From costs 30 ms, 16 kB 3 s), and `Message.get` parses again on every access (ten times
# a part for Content-Type). Real address and MIME headers stay under 256 characters (the corpus
# peaks at 247, bar one To list); a longer address header is read as unstructured text, a
# longer MIME header as its plain decoded text: Message's own get_param, get_filename and
# get_content_type work on the header's string either way.
MAX_STRUCTURED_HEADER_CHARS = 256
# Even unstructured parsing is quadratic in the number of encoded words (280 kB of them: 3 s):
# a header is read up to this length. MIME headers (Content-*) are cut shorter, as get_param
# re-splits a parameter list on each call: a real one, with a long RFC 2231 file name, stays
# under 1,500 characters.
MAX_HEADER_CHARS = 16_384
MAX_MIME_HEADER_CHARS = 2_048
# The text a raw-only message carries: a preview for staff; the raw mail keeps the rest.
MAX_RAW_TEXT_CHARS = 100_000
# What the raw-only path reads: the header block and the start of the body. The parser works
# line by line (~2 us a header line), and raw-only must stay cheap for any 25 MB mail.
MAX_RAW_ONLY_BYTES = 1_048_576
_MSGID_RE = re.compile(r"<([^<>\s]+)>")
# Defects after which the structure we report is a guess: flag the message for staff.
_SEVERE_DEFECTS = (
    email_errors.StartBoundaryNotFoundDefect,
    email_errors.MultipartInvariantViolationDefect,
    email_errors.NoBoundaryInMultipartDefect,
    email_errors.MissingHeaderBodySeparatorDefect,
    email_errors.FirstHeaderLineIsContinuationDefect,
    email_errors.MisplacedEnvelopeHeaderDefect,
)


@dataclass(frozen=True, slots=True)
class EmailLimits:
    """What the parser keeps; defaults match `[smtp]` in config."""

    max_attachment_bytes: int = 10_485_760
    max_attachments: int = 50
    domains: tuple[str, ...] = ()  # our mail domains: which RCPT is "the" recipient
    inboxes: dict[str, str] = field(default_factory=dict)  # address -> default queue

    @classmethod
    def from_settings(cls, smtp: Any) -> EmailLimits:
        return cls(max_attachment_bytes=smtp.max_attachment_bytes,
                   max_attachments=smtp.max_attachments,
                   domains=tuple(d.lower() for d in smtp.domains),
                   inboxes={k.lower(): v for k, v in dict(smtp.inboxes).items()})


DEFAULT_LIMITS = EmailLimits()


def parse_email(
    raw: bytes,
    *,
    mail_from: str | None = None,
    rcpt_to: Sequence[str] = (),
    limits: EmailLimits = DEFAULT_LIMITS,
    reply_secret: bytes | None = None,
    received_at: datetime | None = None,
) -> InboundMessage:
    """Normalise one mail. `mail_from`/`rcpt_to` are the SMTP envelope (None/() for a file);
    `received_at` is when the SMTP server took it (default: now).

    With `reply_secret`, only reply tokens that verify are passed on as hints (the intake
    verifies again; this just prefers a genuine token over a token-shaped string).

    A mail over the MIME caps, or one the full parse fails on, comes back raw-only (see
    `parse_email_raw_only`) with the reason as a flag.
    """
    when = received_at or utcnow()
    try:
        # Bounds from the bytes first: past a cap the full parse itself is what to avoid.
        shape = _mime_bounds(raw)
        reason = _over_caps(*shape)
        if reason is None:
            parsed = _Parsed(raw, mail_from, rcpt_to, limits, reply_secret)
            shape = _mime_shape(parsed.msg)
            reason = _over_caps(*shape)
            if reason is None:
                return parsed.message(when)
        log.warning("email over the MIME caps (%s: depth %d, parts %d); storing it raw-only",
                    reason, *shape)
    except Exception:
        # The last line of defence: a bug or a pathological mail still becomes a message.
        log.exception("email could not be normalised; storing it raw-only and flagged")
        reason, shape = "unparseable", (0, 0)
    return _raw_only(raw, mail_from, rcpt_to, limits, reply_secret, when, reason, shape)


def parse_email_raw_only(
    raw: bytes,
    *,
    mail_from: str | None = None,
    rcpt_to: Sequence[str] = (),
    limits: EmailLimits = DEFAULT_LIMITS,
    reply_secret: bytes | None = None,
    received_at: datetime | None = None,
    reason: str,
) -> InboundMessage:
    """A mail kept raw: never runs the MIME parser, never raises, costs one header-only parse.

    For a mail the full parse must not or could not handle (over the MIME caps, timed out in a
    parse process, crashed). Sender, subject, Message-ID, recipient and thread hints come from
    the top-level headers exactly as `parse_email` derives them, so the dedupe key matches a
    normal parse of a resend; the text is the body of a single-part mail or of the first
    text/plain part (or empty); flags are "malformed" and `reason`; the raw bytes are kept.
    """
    return _raw_only(raw, mail_from, rcpt_to, limits, reply_secret, received_at or utcnow(),
                     reason, None)


def _raw_only(raw: bytes, mail_from: str | None, rcpt_to: Sequence[str], limits: EmailLimits,
              reply_secret: bytes | None, received_at: datetime, reason: str,
              shape: tuple[int, int] | None) -> InboundMessage:
    try:
        return _RawOnly(raw, mail_from, rcpt_to, limits, reply_secret).message(
            received_at, reason, shape)
    except Exception:
        log.exception("email headers could not be read; storing the mail raw and flagged")
        return _bare(raw, mail_from, rcpt_to, limits, received_at, reason)


def spool_key(raw: bytes) -> str:
    """The key that recognises a resend before the mail is parsed: the hash of its bytes.

    A mailer retrying after a 451 sends the very same bytes. Anything looser (Message-ID alone)
    could take a different mail for a resend before we read it; the intake's dedupe on the
    parsed Message-ID and From catches the resends that arrive with different bytes.
    """
    return _raw_key(raw)


def _bare(raw: bytes, mail_from: str | None, rcpt_to: Sequence[str], limits: EmailLimits,
          received_at: datetime, reason: str) -> InboundMessage:
    """Not even the headers could be read: the envelope and the bytes are all there is."""
    sender = _valid_address(mail_from or "") or UNKNOWN_SENDER
    recipient, _ = _pick_recipient(rcpt_to, limits.domains)
    text = clean(raw[:MAX_RAW_TEXT_CHARS].decode("utf-8", "replace")) or ""
    return InboundMessage(
        channel=CHANNEL, provider_id=_raw_key(raw), sender=sender, text=text, full_text=text,
        recipient=recipient, raw=raw, automatic=mail_from == "",
        flags=tuple(dict.fromkeys(("malformed", reason))), received_at=received_at,
        meta=_storable({"mail_from": mail_from, "rcpt_to": list(rcpt_to),
                        "raw_only": reason, "defects": ["unparseable"]}),
    )


def _typed_report(report: dict[str, Any] | None) -> DeliveryReport | None:
    """The delivery report the core reads (the dict stays in meta, for staff)."""
    if not report:
        return None
    return DeliveryReport(status=str(report.get("status") or "bounced"),
                          refers_to=tuple(str(r) for r in report.get("refers_to") or ()),
                          detail=str(report.get("diagnostic") or "") or None,
                          recipient=report.get("recipient") or None)


# -- the MIME caps --------------------------------------------------------------------------------

# A Content-Type header at a line start (the parser also ends a line at a lone CR), and the start
# of its value, read in a lookahead so that the header on the next line is still found.
_LEAF_TYPES = rb"(?:text|image|audio|video|application|font|model)[ \t]*/"
_CONTENT_TYPE_RE = re.compile(rb"[\r\n]content-type:(?=[ \t\r\n]*([^\r\n;]{0,64}))", re.I)
_NON_LEAF_TYPE_RE = re.compile(
    rb"[\r\n]content-type:(?![ \t\r\n]*" + _LEAF_TYPES + rb")(?=[ \t\r\n]*([^\r\n;]{0,64}))", re.I)
_LEAF_TYPE_RE = re.compile(_LEAF_TYPES, re.I)
_CONTAINER_TYPE_RE = re.compile(rb"(multipart|message)[ \t]*/[ \t]*([a-z0-9.+-]*)", re.I)
# A header value with its folded continuation lines.
_FOLDED_VALUE_RE = re.compile(rb"[^\r\n]*(?:(?:\r\n|\r|\n)[ \t][^\r\n]*)*")
# The leading plain characters of a boundary parameter: a prefix of the boundary the parser
# will use, however it unquotes or decodes the rest.
_BOUNDARY_RE = re.compile(rb"""(?:^|;)[ \t]*boundary[ \t]*=[ \t]*"?([0-9A-Za-z'+_,./:-]*)""", re.I)
# An empty line after a line end: where the parser ends a header block.
_BLANK_LINE_RE = re.compile(rb"\n[\r\n]|\r\r|\r\n[\r\n]")
_MAX_BOUNDARIES = 8  # more distinct boundaries than that: count every line that starts "--"
# A message/delivery-status part is a list of header blocks, each ended by an empty line, and
# the scan cannot tell where the part ends: it counts the empty lines after the part's header,
# those of the returned message included, so the bound is loose for real bounces. A block is
# cheap (~35 us), so this many go to the full parse, whose real part count then decides.
_MAX_STATUS_BLOCKS = 20_000


def _over_caps(depth: int, parts: int) -> str | None:
    if depth > MAX_MIME_DEPTH:
        return "mime_too_deep"
    if parts > MAX_MIME_PARTS:
        return "too_many_parts"
    return None


def _mime_bounds(raw: bytes) -> tuple[int, int]:
    """Upper bounds on (depth, parts) of the tree the parser would build, from the bytes alone.

    Only multipart/* and message/* parts have children, and each needs a Content-Type header
    at a line start (counted whatever block it sits in: an upper bound); a multipart child
    starts at a line "--boundary"; a message/delivery-status child ends at an empty line; a
    multipart/digest child is a message/rfc822 by default (one more level and part each).
    A value we cannot classify counts as all of those. A single-part top level has no
    children, whatever its body looks like.
    """
    scan = b"\n" + raw
    if _single_part(scan):
        return 0, 1
    containers = digests = 0
    boundaries: set[bytes] | None = set()  # None: unknown, every "--" line may be a delimiter
    status_from = -1
    for match in _NON_LEAF_TYPE_RE.finditer(scan):
        kind = _content_kind(match.group(1))
        containers += 1
        digests += kind in ("digest", "unknown")
        if kind in ("delivery-status", "unknown") and status_from < 0:
            status_from = match.start()
        if boundaries is not None and kind in ("container", "digest", "unknown"):
            boundaries = _add_boundaries(boundaries, scan, match.end())
        if containers + digests > MAX_MIME_DEPTH:
            break  # over the cap already: the exact figures do not matter
    parts = 1 + containers + _delimiter_lines(scan, boundaries) * (2 if digests else 1)
    if status_from >= 0:
        # Counted without overlap, a run of empty lines counts half: double.
        blocks = 2 * sum(scan.count(pair, status_from) for pair in (b"\n\n", b"\n\r", b"\r\r"))
        parts += blocks if blocks > _MAX_STATUS_BLOCKS else 0
    return containers + digests, parts


def _single_part(scan: bytes) -> bool:
    """Whether the top-level header block declares a leaf type (or no type: text/plain)."""
    blank = _BLANK_LINE_RE.search(scan)
    header_end = blank.start() if blank else len(scan)
    first = _CONTENT_TYPE_RE.search(scan, 0, header_end + 1)
    return first is None or _content_kind(first.group(1)) == "leaf"


def _content_kind(value: bytes) -> str:
    """leaf, container, digest, delivery-status or unknown: what a Content-Type value starts as."""
    if _LEAF_TYPE_RE.match(value):
        return "leaf"
    known = _CONTAINER_TYPE_RE.match(value)
    if known is None:
        return "unknown"  # a comment, an encoded word, garbage: the parser may still see a type
    main, sub = known.group(1).lower(), known.group(2).lower()
    if main == b"multipart" and sub.startswith(b"digest"):
        return "digest"
    if main == b"message" and sub.startswith(b"delivery-status"):
        return "delivery-status"
    return "container"


def _add_boundaries(known: set[bytes], scan: bytes, value_at: int) -> set[bytes] | None:
    """`known` plus the boundary prefixes this header declares; None when it may declare one
    we cannot read (RFC 2231, encoded words, comments, an overlong value)."""
    value = _FOLDED_VALUE_RE.match(scan, value_at, value_at + 4096)
    text = value.group(0) if value else b""
    if len(text) >= 4096 or b"boundary*" in text.lower():
        return None
    found = _BOUNDARY_RE.findall(re.sub(rb"\r\n|\r|\n", b"", text))
    if not found:
        return None if b"boundary" in text.lower() else known
    if not all(found) or len(known | set(found)) > _MAX_BOUNDARIES:
        return None
    return known | set(found)


def _delimiter_lines(scan: bytes, boundaries: set[bytes] | None) -> int:
    if boundaries is None:
        return scan.count(b"\n--") + scan.count(b"\r--")
    return sum(scan.count(end + b"--" + b) for b in boundaries for end in (b"\n", b"\r"))


def _mime_shape(msg: Message) -> tuple[int, int]:
    """(depth, parts) of a parsed tree, walked without recursion; stops once over a cap."""
    depth = parts = 0
    stack = [(msg, 0)]
    while stack and parts <= MAX_MIME_PARTS and depth <= MAX_MIME_DEPTH:
        part, level = stack.pop()
        parts += 1
        depth = max(depth, level)
        if part.is_multipart():  # multipart/* and message/*: a list of sub-messages
            stack += [(sub, level + 1) for sub in part.get_payload() if isinstance(sub, Message)]
    return depth, parts


# -- header parsing with bounded cost ---------------------------------------------------------------

_LINESEP_RE = re.compile(r"\r\n|\r|\n")
_STRUCTURED = frozenset(name for name, kind in HeaderRegistry().registry.items()
                        if not issubclass(kind, UnstructuredHeader))


class HeaderClassesOnce(HeaderRegistry):
    """The stock registry builds a new header class (`type(...)`) every time it is asked for
    one: for each header parsed, and each header set on a message (its count limit). The
    class for a name never changes, so it is built once."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls


class _BoundedPolicy(EmailPolicy):
    """policy.default, with header parsing bounded (see MAX_STRUCTURED_HEADER_CHARS and
    MAX_HEADER_CHARS) and short headers memoised across accesses."""

    def header_fetch_parse(self, name: str, value: Any) -> Any:
        if hasattr(value, "name"):
            return value
        value = _cut(name, _LINESEP_RE.sub("", value))
        if len(value) <= MAX_STRUCTURED_HEADER_CHARS:
            if _recurs(name):
                return _parse_header(self.header_factory, name, value)
            return self.header_factory(name, value)
        if _is_mime_header(name):
            return _PlainHeader(name, value)
        if name.lower() in _STRUCTURED:
            return _Unstructured(name, value)
        return self.header_factory(name, value)


def _is_mime_header(name: str) -> bool:
    return name.lower().startswith("content-") or name.lower() == "mime-version"


def _cut(name: str, value: str) -> str:
    limit = MAX_MIME_HEADER_CHARS if _is_mime_header(name) else MAX_HEADER_CHARS
    if len(value) <= limit:
        return value
    return value[-limit:] if name.lower() == "references" else value[:limit]  # newest ids last


class _Unstructured(UnstructuredHeader, BaseHeader):
    """A header read as plain text: what an overlong structured header falls back to."""


class _PlainHeader(str):
    """A long MIME header as its decoded text, not tokenised: the header parser takes ~1 us a
    character, on each of the ~10 reads of a part's Content-Type."""

    name: str
    defects: tuple[Any, ...] = ()

    def __new__(cls, name: str, value: str) -> _PlainHeader:
        header = super().__new__(cls, _decode_raw_header(value))
        header.name = name
        return header


# Address and MIME headers recur from mail to mail (a citizen's From, the hub's own To, the
# usual Content-Type), so their parses are shared. A Message-ID, Date or References is new
# in every mail: cached, it would only push the recurring ones out.
_ADDRESS_HEADERS = frozenset({"from", "sender", "reply-to", "to", "cc", "delivered-to",
                              "x-original-to"})


def _recurs(name: str) -> bool:
    return _is_mime_header(name) or name.lower() in _ADDRESS_HEADERS


@lru_cache(maxsize=1024)
def _parse_header(factory: HeaderRegistry, name: str, value: str) -> Any:
    return factory(name, value)  # header objects are immutable: safe to share between mails


_POLICY = _BoundedPolicy(header_factory=HeaderClassesOnce())


def _load(raw: bytes) -> tuple[Message, list[str]]:
    """The bounded policy.default first (decoded headers); compat32 when it gives up."""
    try:
        return BytesParser(policy=_POLICY).parsebytes(raw), []
    except Exception:
        return BytesParser(policy=policy.compat32).parsebytes(raw), ["parsed with compat32"]


def _load_headers(raw: bytes) -> tuple[Message, list[str]]:
    """The top-level headers alone (the body stays one string): the raw-only path's parse."""
    try:
        return BytesHeaderParser(policy=_POLICY).parsebytes(raw), []
    except Exception:
        return BytesHeaderParser(policy=policy.compat32).parsebytes(raw), ["parsed with compat32"]


class _Headers:
    """The top-level headers of one mail and what they say: identity, recipient, dedupe key,
    thread hints. Shared by the full parse and the raw-only path, so both derive the same key."""

    def __init__(self, msg: Message, notes: list[str], raw: bytes, mail_from: str | None,
                 rcpt_to: Sequence[str], limits: EmailLimits,
                 reply_secret: bytes | None) -> None:
        self.msg = msg
        self.notes = notes
        self.raw = raw
        self.mail_from = mail_from
        self.rcpt_to = [r.strip() for r in rcpt_to]
        self.limits = limits
        self.secret = reply_secret
        self.flags: list[str] = []
        self.meta: dict[str, Any] = {}
        self._decoded: dict[str, str | None] = {}
        self._parsed: dict[str, Any] = {}
        # First occurrence of each name, as Message.get would find it, without Message.get's
        # scan of every header on every call (a mail may carry 100,000 header lines).
        self._first: dict[str, tuple[str, Any]] = {}
        for key, value in msg.raw_items():
            self._first.setdefault(key.lower(), (key, value))

    def header(self, name: str) -> str | None:
        """A decoded header value, tolerant of headers the policy cannot parse (memoised)."""
        key = name.lower()
        if key not in self._decoded:
            self._decoded[key] = self._read_header(key)
        return self._decoded[key]

    def _read_header(self, key: str) -> str | None:
        if key not in self._first:
            return None
        try:
            return clean(str(self._fetch(key)))
        except Exception:
            name, value = self._first[key]
            return clean(_decode_raw_header(_cut(name, str(value))))

    def _fetch(self, key: str) -> Any:
        """The policy's header object (memoised: long headers bypass the shared cache)."""
        if key not in self._parsed:
            name, value = self._first[key]
            self._parsed[key] = self.msg.policy.header_fetch_parse(name, value)
        return self._parsed[key]

    def _addresses(self, name: str) -> list[tuple[str, str]]:
        key = name.lower()
        if key not in self._first:
            return []
        try:
            addresses = getattr(self._fetch(key), "addresses", None)
            if addresses is not None:
                return [(a.display_name, a.addr_spec) for a in addresses]
        except Exception:  # policy.default gave up on this header: the lenient parser below
            log.debug("%s is not an address list to the policy", name)
        return getaddresses([self.header(name) or ""])

    def _base(self, received_at: datetime) -> InboundMessage:
        """The message as far as the headers make it; callers add text, parts and verdicts."""
        sender_name, sender = self._sender()
        message_id = _bare_id(self.header("Message-ID") or "")
        subject = self.header("Subject")
        recipient, plus_tokens = self._recipient()
        refs = self._refs()
        self.meta.update(self._envelope_meta(message_id, recipient))
        return InboundMessage(
            channel=CHANNEL,
            provider_id=f"{message_id}|{sender}" if message_id else _raw_key(self.raw),
            sender=sender,
            sender_name=sender_name or None,
            recipient=recipient,
            subject=subject,
            thread=ThreadHints(refs=refs, reply_token=self._token(plus_tokens, refs),
                               reference=_reference(subject)),
            thread_key=message_id or None,
            received_at=received_at,
            raw=self.raw,
            language=self._language(),
            inbox_queue=self.limits.inboxes.get(recipient) if recipient else None,
        )

    def _sender(self) -> tuple[str, str]:
        for name in ("From", "Sender", "Reply-To"):
            for display, address in self._addresses(name):
                valid = _valid_address(address)
                if valid:
                    return clean(display) or "", valid
        envelope = _valid_address(self.mail_from or "")
        if envelope:
            return "", envelope
        self.flags.append("no_sender")
        return "", UNKNOWN_SENDER

    def _recipient(self) -> tuple[str | None, list[str]]:
        candidates = list(self.rcpt_to)
        if not candidates:  # a file, not an SMTP delivery: the headers say where it went
            for name in ("Delivered-To", "X-Original-To", "To", "Cc"):
                candidates += [a for _, a in self._addresses(name) if a]
        return _pick_recipient(candidates, self.limits.domains)

    def _refs(self) -> tuple[str, ...]:
        in_reply_to = _MSGID_RE.findall(self.header("In-Reply-To") or "")
        references = _MSGID_RE.findall(self.header("References") or "")
        # The direct parent first, then the thread newest to oldest: the intake stops at the
        # first id it knows, and the nearest one is the right conversation.
        ordered = [*in_reply_to, *reversed(references)]
        return tuple(dict.fromkeys(clean(r) or "" for r in ordered if r))[:MAX_REFS]

    def _token(self, plus_tokens: list[str], refs: tuple[str, ...]) -> str | None:
        candidates = plus_tokens + [t for ref in refs for t in find_tokens(ref.split("@")[0])]
        if self.secret is not None:
            candidates = [t for t in candidates if verify_reply_token(t, self.secret) is not None]
        return candidates[0] if candidates else None

    def _language(self) -> str | None:
        value = (self.header("Content-Language") or "").split(",")[0].strip().lower()
        primary = value.split("-")[0]
        return primary if len(primary) == 2 and primary.isalpha() else None

    def _automatic_reasons(self, sender: str, subject: str | None) -> list[str]:
        return automatic_reasons(self.msg, self.header, mail_from=self.mail_from, sender=sender,
                                 subject=subject)

    def _envelope_meta(self, message_id: str, recipient: str | None) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "message_id": message_id or None,
            "in_reply_to": clean(self.header("In-Reply-To")),
            "mail_from": self.mail_from,
            "rcpt_to": self.rcpt_to,
            "date": _iso_date(self.header("Date")),
        }
        if not message_id:
            self.flags.append("no_message_id")
        if recipient and recipient in self.limits.inboxes:
            meta["inbox_queue"] = self.limits.inboxes[recipient]
        return meta


class _RawOnly(_Headers):
    """A mail kept raw: the headers and what text can be had without the MIME parser."""

    def __init__(self, raw: bytes, mail_from: str | None, rcpt_to: Sequence[str],
                 limits: EmailLimits, reply_secret: bytes | None) -> None:
        self.head = raw[:MAX_RAW_ONLY_BYTES]
        super().__init__(*_load_headers(self.head), raw, mail_from, rcpt_to, limits,
                         reply_secret)

    def message(self, received_at: datetime, reason: str,
                shape: tuple[int, int] | None) -> InboundMessage:
        base = self._base(received_at)
        text = _raw_text(self.msg, self.head)
        reasons = self._automatic_reasons(base.sender, base.subject)
        if reasons:
            self.meta["automatic_reasons"] = list(dict.fromkeys(reasons))
        self.meta["raw_only"] = reason
        if shape is not None and reason in ("mime_too_deep", "too_many_parts"):
            self.meta["mime_shape"] = {"depth": shape[0], "parts": shape[1]}
        if self.notes:
            self.meta["defects"] = list(self.notes)
        return replace(base, text=text, full_text=text or None, automatic=bool(reasons),
                       flags=tuple(dict.fromkeys(["malformed", reason, *self.flags])),
                       meta=_storable(self.meta))


class _Parsed(_Headers):
    """One full parse: holds the message tree while the fields are read from it."""

    def __init__(self, raw: bytes, mail_from: str | None, rcpt_to: Sequence[str],
                 limits: EmailLimits, reply_secret: bytes | None) -> None:
        super().__init__(*_load(raw), raw, mail_from, rcpt_to, limits, reply_secret)

    def message(self, received_at: datetime) -> InboundMessage:
        base = self._base(received_at)
        full_text, html = self._bodies()
        text = split_reply(full_text)[0] if full_text else ""
        attachments = self._attachments()
        automatic = self._automatic(base.sender, base.subject)
        self._note_defects()
        dropped = tuple(DroppedAttachment(**d) for d in self.meta.get("dropped_attachments", ()))
        return replace(base, text=text, full_text=full_text or None, html=html,
                       attachments=attachments, automatic=automatic,
                       flags=tuple(dict.fromkeys(self.flags)), meta=_storable(self.meta),
                       delivery_report=_typed_report(self.meta.get("delivery_report")),
                       dropped_attachments=dropped)

    # -- bodies and attachments --------------------------------------------------------------

    def _bodies(self) -> tuple[str, str | None]:
        plain: list[str] = []
        html: list[str] = []
        for part in _body_parts(self.msg):
            target = html if ctype_of(part) == "text/html" else plain
            target.append(decode_part(part))
        html_text = "\n".join(html) or None
        full_text = "\n".join(plain).strip()
        if not full_text and html_text:
            full_text = html_to_text(html_text)
            self.flags.append("text_from_html")
        return full_text, html_text

    def _attachments(self) -> tuple[InboundAttachment, ...]:
        kept: list[InboundAttachment] = []
        dropped: list[dict[str, Any]] = []
        for index, part in enumerate(_attachment_parts(self.msg), start=1):
            attachment = _attachment(part, index)
            reason = None
            if len(attachment.data) > self.limits.max_attachment_bytes:
                reason = "attachment_too_large"
            elif len(kept) >= self.limits.max_attachments:
                reason = "too_many_attachments"
            if reason:
                self.flags.append(reason)
                dropped.append({"filename": attachment.filename, "size": len(attachment.data),
                                "content_type": attachment.content_type, "reason": reason})
            else:
                kept.append(attachment)
        if dropped:
            self.meta["dropped_attachments"] = dropped
        return tuple(kept)

    # -- verdicts -----------------------------------------------------------------------------

    def _automatic(self, sender: str, subject: str | None) -> bool:
        reasons = self._automatic_reasons(sender, subject)
        empty_return_path = any(r == "empty return path" for r in reasons)
        report = parse_delivery_report(
            self.msg, sender=sender, from_header=self.header("From") or "", subject=subject,
            empty_return_path=empty_return_path,
            failed_recipients=self.header("X-Failed-Recipients"))
        if report is not None:
            self.meta["delivery_report"] = report
            reasons.append("delivery report")
        if reasons:
            self.meta["automatic_reasons"] = list(dict.fromkeys(reasons))
        return bool(reasons)

    def _note_defects(self) -> None:
        defects: list[str] = list(self.notes)
        severe = bool(self.notes)
        for part in _all_parts(self.msg):
            for defect in getattr(part, "defects", ()):
                defects.append(type(defect).__name__)
                severe = severe or isinstance(defect, _SEVERE_DEFECTS)
        if severe or not self.msg.keys():
            self.flags.append("malformed")
        if defects:
            self.meta["defects"] = sorted(set(defects))[:20]


# -- raw-only text ----------------------------------------------------------------------------------

_TEXT_PLAIN_RE = re.compile(rb"[\r\n]content-type:[ \t\r\n]*text/plain", re.I)
_LINE_END_RE = re.compile(rb"\r\n|\r|\n")


def _raw_text(msg: Message, raw: bytes) -> str:
    """The text a raw-only mail offers without the MIME parser: a single-part mail's body, or
    the first text/plain part of a multipart one."""
    try:
        part: Message | None = msg
        if maintype(msg) == "multipart":
            part = _first_text_part(raw)
        if part is None or ctype_of(part) not in ("text/plain", "text/html"):
            return ""
        text = decode_part(part)[:4 * MAX_RAW_TEXT_CHARS]
        if ctype_of(part) == "text/html":
            text = html_to_text(text)
        return text.strip()[:MAX_RAW_TEXT_CHARS]
    except Exception:  # a preview is not worth failing for
        log.warning("no text for a raw-only mail", exc_info=True)
        return ""


def _first_text_part(raw: bytes) -> Message | None:
    """The first text/plain part, found by a scan and parsed on its own: header-only, so the
    parser never descends, whatever the part's headers claim."""
    scan = b"\n" + raw
    blank = _BLANK_LINE_RE.search(scan)
    match = _TEXT_PLAIN_RE.search(scan, blank.start() if blank else len(scan))
    if match is None:
        return None
    delimiter = max(scan.rfind(b"\n--", 0, match.start() + 1),
                    scan.rfind(b"\r--", 0, match.start() + 1))
    line_end = _LINE_END_RE.search(scan, delimiter + 1) if delimiter >= 0 else None
    if line_end is None:
        return None
    start = line_end.end()
    ends = [i for i in (scan.find(b"\n--", match.end()), scan.find(b"\r--", match.end())) if i >= 0]
    end = min([*ends, len(scan), start + 8 * MAX_RAW_TEXT_CHARS])
    part = BytesHeaderParser(policy=policy.compat32).parsebytes(scan[start:end])
    return part if ctype_of(part) == "text/plain" else None


def _storable(value: Any) -> Any:
    """Meta as JSON a database takes: no NUL and no lone surrogate in any string."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return value


# -- helpers (pure functions) -------------------------------------------------------------------


def _all_parts(msg: Message) -> Iterator[Message]:
    try:
        yield from msg.walk()
    except Exception:  # walk() on a broken tree: the root still counts
        yield msg


def _is_attachment(part: Message) -> bool:
    try:
        disposition = (part.get_content_disposition() or "").lower()
        named = part.get_filename() is not None
    except Exception:  # a broken parameter list: treat the part as a file, keep it
        return True
    return disposition == "attachment" or (named and disposition != "inline") or (
        maintype(part) != "text")


def _body_parts(msg: Message) -> Iterator[Message]:
    """Inline text/plain and text/html leaves of this mail (not of attached/forwarded mails)."""
    for part in _leaves(msg):
        if ctype_of(part) in ("text/plain", "text/html") and not _is_attachment(part):
            yield part


def _attachment_parts(msg: Message) -> Iterator[Message]:
    for part in _leaves(msg):
        if part is msg and not msg.is_multipart() and maintype(part) == "text":
            continue  # a single-part text mail has a body, not an attachment
        if ctype_of(part) not in ("text/plain", "text/html") or _is_attachment(part):
            yield part


def _leaves(msg: Message) -> Iterator[Message]:
    """Leaf parts in order; an attached message (message/*) counts as one leaf."""
    if maintype(msg) == "multipart":
        payload = msg.get_payload()
        if isinstance(payload, list):
            for sub in payload:
                if isinstance(sub, Message):
                    yield from _leaves(sub)
            return
    yield msg


def _attachment(part: Message, index: int) -> InboundAttachment:
    content_type = clean(ctype_of(part)) or "application/octet-stream"
    data = _part_bytes(part)
    filename = _safe(lambda: clean(part.get_filename()) or "", "")
    if not filename:
        extension = ".eml" if content_type == "message/rfc822" else (
            mimetypes.guess_extension(content_type) or ".bin")
        filename = f"part-{index}{extension}"
    content_id = _safe(lambda: (clean(str(part.get("Content-ID") or "")) or "").strip("<> "),
                       "")
    disposition = _safe(part.get_content_disposition, None)
    inline = disposition == "inline" or (bool(content_id) and disposition is None)
    return InboundAttachment(filename=filename[:255], content_type=content_type, data=data,
                             content_id=content_id or None, inline=inline)


def _safe(read: Callable[[], _T], default: _T) -> _T:
    """One header read that a broken parameter list must not turn into a lost mail."""
    try:
        return read()
    except Exception:
        return default


def _part_bytes(part: Message) -> bytes:
    # As parsed: get_payload() decodes text by its declared charset, which may be no codec.
    payload = getattr(part, "_payload", None)
    if isinstance(payload, list):  # message/rfc822, message/delivery-status: sub-messages
        return b"\n".join(_message_bytes(m) for m in payload if isinstance(m, Message))
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if isinstance(data, bytes):
        return data
    return str(payload or "").encode("utf-8", "surrogateescape")


class _AttachedMessagePolicy(Compat32):
    """compat32 for writing an attached message back out, except that a long header is written
    as received: refolding costs ~1 us per byte (a 25 MB header: half a minute)."""

    def fold_binary(self, name: str, value: Any) -> bytes:
        if isinstance(value, str) and len(value) > MAX_HEADER_CHARS:
            lines = _LINESEP_RE.split(f"{name}: {value}")
            return (self.linesep.join(lines) + self.linesep).encode("ascii", "surrogateescape")
        return super().fold_binary(name, value)


_ATTACHED_POLICY = _AttachedMessagePolicy()


def _message_bytes(msg: Message) -> bytes:
    try:
        return msg.as_bytes(policy=_ATTACHED_POLICY)
    except Exception:  # serialising a broken tree can fail; its text is still worth keeping
        return _safe(lambda: str(msg).encode("utf-8", "surrogateescape"), b"")


def _decode_raw_header(value: str) -> str:
    try:
        return str(make_header(decode_header(value)))
    except Exception:
        return value


def _valid_address(address: str) -> str | None:
    address = (clean(address) or "").strip().strip("<>").strip().lower()
    if not address or "@" not in address or any(c.isspace() for c in address):
        address = parseaddr(address)[1].lower()
    local, _, domain = address.rpartition("@")
    if local and domain and ("." in domain or domain == "localhost"):
        return address
    return None


def _pick_recipient(candidates: Sequence[str], domains: Sequence[str]) -> tuple[str | None,
                                                                                   list[str]]:
    """(the first address in our domains with its plus-part removed, tokens in plus-parts)."""
    tokens: list[str] = []
    chosen: str | None = None
    for candidate in candidates:
        address = _valid_address(candidate)
        if not address:
            continue
        local, _, domain = address.rpartition("@")
        if domains and domain not in domains:
            continue
        base, plus, tag = local.partition("+")
        if plus:
            tokens += find_tokens(tag)
        if chosen is None:
            chosen = f"{base}@{domain}"
    return chosen, tokens


def _bare_id(value: str) -> str:
    found = _MSGID_RE.search(value)
    bare = found.group(1) if found else value.strip()
    return (clean(bare) or "")[:995]


def _reference(subject: str | None) -> str | None:
    """Our `[#REF]` in the subject, else a bare reference standing alone in it."""
    match = REFERENCE_RE.search(subject or "")
    if match:
        return match.group(1)
    bare = BARE_REFERENCE_RE.findall(subject or "")
    return bare[-1] if bare else None


def _raw_key(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _iso_date(value: str | None) -> str | None:
    if not value:
        return None
    try:
        parsed: datetime = parsedate_to_datetime(value)
    except Exception:
        return None
    return parsed.isoformat()
