"""hub.reply_files: the name a staff member's file goes out under, and what may be sent."""

from __future__ import annotations

import pytest

from hub.reply_files import MAX_NAME, MAX_REPLY_FILES, checked_files, safe_filename
from hub.service import Invalid

PDF = b"%PDF-1.7\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


@pytest.mark.parametrize(("name", "content_type", "expected"), [
    ("report.pdf", "application/pdf", "report.pdf"),
    ("C:\\Users\\clerk\\Desktop\\report.PDF", "application/pdf", "report.pdf"),
    ("../../etc/passwd", "application/pdf", "passwd.pdf"),
    ("invoice\u202egnp.exe", "image/png", "invoicegnp.exe.png"),  # no right-to-left trick
    ("a\x00b\r\nc.jpeg", "image/jpeg", "abc.jpg"),
    ('what?<is>"this".png', "image/png", "what_is_this_.png"),
    ("...", "application/pdf", "attachment.pdf"),
    ("%2Fetc%2Fmap.png", "image/png", "map.png"),
])
def test_a_name_loses_paths_and_controls_and_ends_in_the_contents_extension(
        name: str, content_type: str, expected: str) -> None:
    assert safe_filename(name, content_type) == expected


def test_a_long_name_is_cut_but_keeps_its_extension() -> None:
    name = safe_filename("x" * 500 + ".pdf", "application/pdf")
    assert len(name) == MAX_NAME and name.endswith("xx.pdf")


def test_the_type_is_told_by_the_content_and_empty_parts_are_dropped() -> None:
    kept = checked_files([("scan.pdf", PNG), ("empty.pdf", b""), ("notes.pdf", PDF)], 1024)
    assert [(a.filename, a.content_type) for a in kept] == [
        ("scan.pdf.png", "image/png"), ("notes.pdf", "application/pdf")]


@pytest.mark.parametrize(("files", "code"), [
    ([("a.pdf", PDF + b"0" * 2000)], "attachment_too_large"),
    ([("a.html", b"<html><script>alert(1)</script>")], "attachment_type"),
    ([(f"{i}.pdf", PDF) for i in range(MAX_REPLY_FILES + 1)], "too_many_attachments"),
])
def test_refusals_name_their_code(files: list[tuple[str, bytes]], code: str) -> None:
    with pytest.raises(Invalid) as refused:
        checked_files(files, 1024)
    assert refused.value.code == code
