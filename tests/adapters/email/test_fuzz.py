"""parse_email against mutated corpus mails: it never raises, never hangs, always names a sender.

Deterministic (fixed seed, plain `random`: hypothesis is not a dependency) and bounded: about
three mutants per corpus mail plus hand-made hostile mails, well under a minute on two cores.
A hang is caught by a watchdog thread, not by timing assertions: the suite never judges speed,
`HANG_SECONDS` only tells a stuck parse from a slow machine.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from hub.adapters.email.normalize import parse_email
from hub.model import InboundMessage

from .conftest import DOMAIN, LIMITS, SECRET, CorpusMail

SEED = 20_240_611
MUTANTS_PER_MAIL = 3
HANG_SECONDS = 10.0  # a hang detector only: real parses take milliseconds
Mutator = Callable[[random.Random, bytes], bytes]


def parse_watched(raw: bytes, name: str = "mail", **kwargs: Any) -> InboundMessage:
    """parse_email in a daemon thread; a parse still running after HANG_SECONDS fails the test
    (the thread is left behind: Python cannot stop it, and it must not block the run)."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(parse_email(raw, **kwargs))
        except BaseException as exc:  # handed to the test below
            outcome.append(exc)

    worker = threading.Thread(target=run, name=f"parse {name}", daemon=True)
    worker.start()
    worker.join(HANG_SECONDS)
    if worker.is_alive():
        pytest.fail(f"parse_email hung on {name} ({len(raw)} bytes)")
    if isinstance(outcome[0], BaseException):
        raise AssertionError(f"parse_email raised on {name}") from outcome[0]
    result: InboundMessage = outcome[0]
    return result


def assert_usable(msg: InboundMessage, raw: bytes, name: str) -> None:
    """What the intake relies on, whatever the mail: a key, a sender, storable text, raw kept."""
    assert isinstance(msg, InboundMessage), name
    assert msg.provider_id and msg.sender and "@" in msg.sender, name
    assert msg.raw == raw, name
    for value in (msg.text, msg.full_text, msg.html, msg.subject, msg.sender_name, msg.recipient,
                  msg.sender, msg.provider_id, *(a.filename for a in msg.attachments),
                  *(a.content_type for a in msg.attachments)):
        (value or "").encode("utf-8")  # no lone surrogates
        assert "\x00" not in (value or ""), name
    json.dumps(msg.meta, ensure_ascii=False).encode("utf-8")


# -- mutators: each takes the mail's bytes and returns a broken variant ------------------------------

_HEADER_LINE_RE = re.compile(rb"^[!-9;-~]+:.*$", re.MULTILINE)
_BOUNDARY_RE = re.compile(rb'boundary="?([^";\r\n]+)"?', re.IGNORECASE)
_CHARSET_RE = re.compile(rb'charset="?[^";\s]*"?', re.IGNORECASE)
_CTE_RE = re.compile(rb"^content-transfer-encoding:[^\r\n]*", re.IGNORECASE | re.MULTILINE)
_CONTENT_TYPE_RE = re.compile(rb"^content-type:[ \t]*[^;\r\n]*", re.IGNORECASE | re.MULTILINE)
_FILENAME_RE = re.compile(rb'(file)?name="?([^";\r\n]*)"?', re.IGNORECASE)
CHARSETS = (b"utf-8", b"x-unknown-42", b"utf-16", b"undefined", b"idna", b"rot13", b"base64",
            b"utf\x00-8", b"us-ascii", b"utf-7", b"iso-2022-jp", b"", b"\xff\xfe", b"zlib")
ENCODINGS = (b"base64", b"quoted-printable", b"x-uuencode", b"uuencode", b"7bit", b"binary",
             b"bogus", b"base64 (comment)", b"\x00", b"", b"8bit; x=y")


def _header_end(raw: bytes) -> int:
    found = re.search(rb"\r?\n\r?\n", raw)
    return found.start() if found else len(raw)


def _header_lines(raw: bytes) -> list[re.Match[bytes]]:
    return list(_HEADER_LINE_RE.finditer(raw, 0, _header_end(raw)))


def _insert(rng: random.Random, raw: bytes, start: int, end: int, junk: bytes) -> bytes:
    at = rng.randint(start, max(start, end))
    return raw[:at] + junk + raw[at:]


def duplicate_header(rng: random.Random, raw: bytes) -> bytes:
    lines = _header_lines(raw)
    if not lines:
        return raw
    line = rng.choice(lines)
    copy = line.group(0) if rng.random() < 0.5 else line.group(0).split(b":")[0] + b": \xff odd"
    return raw[:line.end()] + b"\r\n" + copy + raw[line.end():]


def remove_header(rng: random.Random, raw: bytes) -> bytes:
    lines = _header_lines(raw)
    if not lines:
        return raw
    line = rng.choice(lines)
    return raw[:line.start()] + raw[line.end() + 1:]


def garble_header(rng: random.Random, raw: bytes) -> bytes:
    lines = _header_lines(raw)
    if not lines:
        return raw
    line = rng.choice(lines)
    junk = bytes(rng.choice(b"<>()\"\\@,;:=?[]\x00\xff \t") for _ in range(rng.randint(1, 40)))
    return _insert(rng, raw, line.start() + 1, line.end(), junk)


def nul_and_high_bytes(rng: random.Random, raw: bytes) -> bytes:
    end = _header_end(raw)
    for _ in range(rng.randint(1, 8)):
        in_headers = rng.random() < 0.5
        junk = bytes([rng.choice((0, 0x80, 0xA0, 0xC3, 0xE2, 0xED, 0xF0, 0xFF))])
        raw = _insert(rng, raw, 0 if in_headers else end, end if in_headers else len(raw), junk)
    return raw


def overlong_header_line(rng: random.Random, raw: bytes) -> bytes:
    name = rng.choice((b"Subject", b"X-Long", b"References", b"To", b"Content-Type", b"Received"))
    value = bytes(rng.choice(b"abc (x)\"<>@,;=?") for _ in range(rng.randint(2_000, 60_000)))
    return name + b": " + value + b"\r\n" + raw


def huge_message_id(rng: random.Random, raw: bytes) -> bytes:
    local = b"".join(rng.choice((b"a", b".", b"%", b"<", b"\xc3\xa9")) for _ in range(
        rng.randint(600, 5_000)))
    return b"Message-ID: <" + local + b"@example.org>\r\n" + raw


def long_from(rng: random.Random, raw: bytes) -> bytes:
    local = b"x" * rng.randint(321, 2_000)
    name = rng.choice((b"", b'"Very, Long (name)" ', b"=?utf-8?q?J=C3=BCrgen?= "))
    return b"From: " + name + b"<" + local + b"@example.org>\r\n" + raw


def long_subject(rng: random.Random, raw: bytes) -> bytes:
    word = rng.choice((b"pothole ", b"=?utf-8?b?U3RyYcOfZQ==?= ", b"\xc3\xa4\xc3\xb6 "))
    return b"Subject: " + (word * 200)[:rng.randint(990, 1_000)] + b"\r\n" + raw


def break_boundary(rng: random.Random, raw: bytes) -> bytes:
    found = _BOUNDARY_RE.search(raw)
    if not found:
        return raw
    boundary = found.group(1)
    choice = rng.randrange(4)
    if choice == 0:  # the header names another boundary than the body uses
        return raw.replace(boundary, boundary + b"x", 1)
    if choice == 1:  # no boundary parameter at all
        return raw[:found.start()] + raw[found.end():]
    if choice == 2:  # closing delimiters lost
        return raw.replace(b"--" + boundary + b"--", b"")
    return raw.replace(b"--" + boundary, b"--" + boundary[: len(boundary) // 2], 2)


def wrong_charset(rng: random.Random, raw: bytes) -> bytes:
    charset = rng.choice(CHARSETS)
    if _CHARSET_RE.search(raw):
        return _CHARSET_RE.sub(b'charset="' + charset + b'"', raw, count=rng.randint(1, 3))
    return b'Content-Type: text/plain; charset="' + charset + b'"\r\n' + raw


def wrong_transfer_encoding(rng: random.Random, raw: bytes) -> bytes:
    value = b"Content-Transfer-Encoding: " + rng.choice(ENCODINGS)
    if _CTE_RE.search(raw):
        return _CTE_RE.sub(value, raw, count=rng.randint(1, 3))
    return value + b"\r\n" + raw


def truncate(rng: random.Random, raw: bytes) -> bytes:
    return raw[:rng.randint(0, len(raw))]


def nul_in_attachment(rng: random.Random, raw: bytes) -> bytes:
    raw = _FILENAME_RE.sub(lambda m: (m.group(1) or b"") + b'name="a\x00b\xff.pdf"', raw, count=2)
    types = list(_CONTENT_TYPE_RE.finditer(raw))
    if not types:
        return b"Content-Type: application/p\x00df\r\n" + raw
    target = rng.choice(types)
    return raw[:target.end()] + b"\x00x" + raw[target.end():]


MUTATORS: tuple[Mutator, ...] = (
    duplicate_header, remove_header, garble_header, nul_and_high_bytes, overlong_header_line,
    huge_message_id, long_from, long_subject, break_boundary, wrong_charset,
    wrong_transfer_encoding, truncate, nul_in_attachment,
)


def mutate(rng: random.Random, raw: bytes) -> tuple[bytes, list[str]]:
    applied = rng.sample(MUTATORS, rng.randint(1, 3))
    for mutator in applied:
        raw = mutator(rng, raw)
    return raw, [m.__name__ for m in applied]


# -- hand-made hostile mails -------------------------------------------------------------------------

_HEAD = (b"From: Ana <ana@example.org>\r\nTo: help@city.example\r\nSubject: hostile\r\n"
         b"Message-ID: <hostile@example.org>\r\nMIME-Version: 1.0\r\n")


def nested_multipart(levels: int) -> bytes:
    opening = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
                       for i in range(levels))
    closing = b"".join(b"\r\n--b%d--" % i for i in reversed(range(levels)))
    return _HEAD + opening + b"Content-Type: text/plain\r\n\r\nhello" + closing + b"\r\n"


def nested_messages(levels: int) -> bytes:
    return _HEAD + b"Content-Type: message/rfc822\r\n\r\n" * levels + b"\r\nhello\r\n"


def hostile_mails() -> dict[str, bytes]:
    parts = b"".join(b"--p\r\nContent-Type: text/plain\r\n\r\n%d\r\n" % i for i in range(5_000))
    return {
        "nested-multipart-1000": nested_multipart(1_000),
        "nested-message-1000": nested_messages(1_000),
        "nested-unclosed-1000": nested_multipart(1_000).split(b"hello")[0],
        "flat-5000-parts": _HEAD + b'Content-Type: multipart/mixed; boundary="p"\r\n\r\n' + parts,
        "status-blocks-50000": _HEAD + b"Content-Type: message/delivery-status\r\n\r\n"
                                       + b"Action: failed\r\n\r\n" * 50_000,
        "digest-2000": _HEAD + b"Content-Type: multipart/digest; boundary=d\r\n\r\n"
                               + b"--d\r\n\r\nSubject: x\r\n\r\nbody\r\n" * 2_000,
        "html-unclosed-tags": _HEAD + b"Content-Type: text/html\r\n\r\n" + b"<a " * 40_000,
        "html-unclosed-comments": _HEAD + b"Content-Type: text/html\r\n\r\n" + b"<!--" * 40_000,
        "from-comments": b"From: " + b"(a)" * 20_000 + b" <a@example.org>\r\n" + _HEAD,
        "from-quotes": b'From: ' + b'"' * 40_000 + b"\r\n" + _HEAD,
        "from-encoded-words": b"From: " + b"=?utf-8?q?a?= " * 20_000 + b"\r\n" + _HEAD,
        "content-type-params": _HEAD + b"Content-Type: text/plain; " + b"a=b; " * 20_000 + b"\r\n\r\nx",
        "message-id-brackets": b"Message-ID: " + b"<" * 20_000 + b"\r\n" + _HEAD + b"\r\nx",
        "header-lines-200000": _HEAD + b"X-A: b\r\n" * 200_000 + b"\r\nbody\r\n",
        "attachment-params": _HEAD + b'Content-Type: multipart/mixed; boundary="p"\r\n\r\n'
                             + (b'--p\r\nContent-Type: application/pdf; name="' + b"(a)" * 170
                                + b'"\r\nContent-Disposition: attachment; filename="'
                                + b'\\"' * 250 + b'"\r\n\r\nx\r\n') * 200,
        "only-nul": b"\x00" * 10_000,
        "empty": b"",
    }


# -- the tests ---------------------------------------------------------------------------------------


def test_mutated_corpus_never_raises_or_hangs(corpus: list[CorpusMail],
                                              caplog: pytest.LogCaptureFixture) -> None:
    rng = random.Random(SEED)
    outcomes: Counter[str] = Counter()
    for mail in corpus:
        for number in range(MUTANTS_PER_MAIL):
            raw, applied = mutate(rng, mail.raw)
            name = f"{mail.name} #{number} {applied}"
            envelope = rng.choice(("", "c@example.org", None))
            msg = parse_watched(raw, name, mail_from=envelope, rcpt_to=[f"help@{DOMAIN}"],
                                limits=LIMITS, reply_secret=SECRET)
            assert_usable(msg, raw, name)
            outcomes.update(f for f in msg.flags if f in ("malformed", "mime_too_deep",
                                                          "too_many_parts", "unparseable"))
            outcomes["parsed"] += 1
    print(f"\nfuzz outcomes: {dict(sorted(outcomes.items()))}")
    # parse_email's catch-all kept every mail, but it is for bugs: the fuzz must not need it.
    crashes = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not crashes, crashes[:5]


@pytest.mark.parametrize("name", sorted(hostile_mails()))
def test_hostile_mail_is_kept(name: str, caplog: pytest.LogCaptureFixture) -> None:
    raw = hostile_mails()[name]
    msg = parse_watched(raw, name, mail_from="c@example.org", rcpt_to=[f"help@{DOMAIN}"],
                        limits=LIMITS)
    assert_usable(msg, raw, name)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], name
