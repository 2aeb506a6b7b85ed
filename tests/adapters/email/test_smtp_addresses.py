"""The SMTP server's fast reading of MAIL FROM / RCPT TO addresses gives what aiosmtpd's full
RFC 5322 parser gives, for the plain addresses it takes and the odd ones it leaves to it."""

from __future__ import annotations

import pytest
from aiosmtpd.smtp import SMTP

from hub.adapters.email.inbound import _LongLineSMTP

CASES = [
    "<ana@example.org>", " <ana.perez@example.org> SIZE=1234", "<a+b@x.y> BODY=8BITMIME",
    "<A.B@EXAMPLE.ORG>  ", "<a@b>x", "<a@b> (a comment) SIZE=1", "<a..b@x>", "<.a@x>",
    '<"quoted name"@x.org>', "<>", "ana@example.org", "<a@[1.2.3.4]>", "<a@-x.org>",
    "<" + "a" * 70 + "@x.org>", "<ana@example.org", "<@relay.example:ana@example.org>",
    "<ana@exa mple.org>", "<ana@example.org>\x00",
]


@pytest.mark.parametrize("arg", CASES)
def test_fast_path_reads_addresses_as_the_full_parser_does(arg: str) -> None:
    class Handler:
        pass

    assert _LongLineSMTP(Handler())._getaddr(arg) == SMTP(Handler())._getaddr(arg)
