"""parse_email on the real corpus and on the hand-made cases the hub depends on."""

from __future__ import annotations

import json
from collections import Counter
from email.message import EmailMessage

from hub.adapters.email.body import split_reply
from hub.adapters.email.normalize import EmailLimits, parse_email
from hub.model import OutboundMessage
from hub.tokens import make_reply_token

from .conftest import CORPUS, DOMAIN, LIMITS, SECRET, CorpusMail


def test_every_corpus_mail_becomes_a_storable_message(corpus: list[CorpusMail]) -> None:
    outcomes: Counter[str] = Counter()
    for mail in corpus:
        msg = parse_email(mail.raw, mail_from="" if mail.bounce else "c@example.org",
                          rcpt_to=[f"help@{DOMAIN}"], limits=LIMITS)
        assert msg.channel == "email" and msg.provider_id and "@" in msg.sender, mail.name
        assert msg.raw == mail.raw
        json.dumps(msg.meta)  # JSON-able, as the contract says
        for value in (msg.text, msg.full_text or "", msg.html or "", msg.subject or "",
                      msg.sender_name or ""):
            value.encode("utf-8")  # no lone surrogates: every driver must be able to store it
            assert "\x00" not in value, mail.name
        outcomes["parsed"] += 1
        outcomes.update(f"flag:{f}" for f in msg.flags)
        outcomes["automatic"] += msg.automatic
        outcomes["delivery_report"] += "delivery_report" in msg.meta
    print(f"\ncorpus parse outcomes ({len(corpus)} mails): {dict(sorted(outcomes.items()))}")
    assert outcomes["parsed"] == len(corpus) > 800


def test_talon_expected_reply_text() -> None:
    """The new text equals talon's expected reply (talon keeps the signature; we strip it)."""
    for name in ("iphone", "sparrow"):
        folder = CORPUS / "mailgun-talon" / "standard_replies"
        expected = (folder / f"{name}_reply_text").read_text().strip()
        msg = parse_email((folder / f"{name}.eml").read_bytes())
        _, with_signature = split_reply(msg.full_text or "")
        assert _squash(with_signature) == _squash(expected), name
        assert msg.text and _squash(expected).startswith(_squash(msg.text)), name
        assert "wrote" not in msg.text


def _squash(text: str) -> str:
    return "\n".join(line.strip() for line in text.strip().splitlines())


def test_standard_replies_drop_the_quote() -> None:
    for path in sorted((CORPUS / "mailgun-talon" / "standard_replies").glob("*.eml")):
        msg = parse_email(path.read_bytes())
        assert msg.text, path.name
        assert len(msg.text) < len(msg.full_text or ""), path.name


def test_reply_split_is_the_librarys_own_on_every_corpus_text(corpus: list[CorpusMail]) -> None:
    """The reply parser's patterns are built once and its header scan is skipped where no
    header can be: the replies found are exactly those of mail-parser-reply as shipped."""
    from mailparser_reply import EmailReplyParser

    from hub.adapters.email import body

    library = EmailReplyParser(languages=list(body.REPLY_LANGUAGES))
    texts = [parse_email(mail.raw).full_text or "" for mail in corpus]
    texts += ["Thanks.\n\n-----Original Message-----\nFrom someone", "好的\n2024年3月1日 写道\uff1a\n> 问",
              "No reply header here, only words.", "On Monday\nAna wrote:\n> the question"]
    with_header = 0
    for text in texts:
        ours = [(r.content, r.headers, r.signatures) for r in body._read(text).replies]
        theirs = [(r.content, r.headers, r.signatures) for r in library.read(text).replies]
        assert ours == theirs, text[:80]
        with_header += any(headers for _, headers, _ in ours)
    assert with_header > 50  # the corpus has replies of many clients: the header scan ran


def test_multilanguage_reply_headers() -> None:
    german = ("Vielen Dank, das Schlagloch ist noch da.\n\n"
              "Am Mo., 2. Jan. 2023 um 10:00 Uhr schrieb Stadt <help@city.example>:\n"
              "> Wir kümmern uns darum.\n")
    spanish = ("Gracias, sigue igual.\n\n"
               "El lun, 2 ene 2023 a las 10:00, Ciudad (<help@city.example>) escribió:\n"
               "> Lo revisamos.\n")
    for body, expected in ((german, "Vielen Dank"), (spanish, "Gracias")):
        msg = parse_email(_mail(body))
        assert msg.text.startswith(expected) and ">" not in msg.text, msg.text


def _mail(body: str, **headers: str) -> bytes:
    mail = EmailMessage()
    mail["From"] = headers.pop("From", "Ana Citizen <Ana@Example.org>")
    mail["To"] = headers.pop("To", f"help@{DOMAIN}")
    mail["Subject"] = headers.pop("Subject", "Pothole")
    mail["Message-ID"] = headers.pop("Message_ID", "<m1@example.org>")
    mail.set_content(body)  # before the extra headers: it resets every Content-* header
    for name, value in headers.items():
        mail[name.replace("_", "-")] = value
    return mail.as_bytes()


def test_identity_dedupe_key_and_thread_hints() -> None:
    token = make_reply_token(42, SECRET)
    raw = _mail("Still broken", Subject="Re: Pothole [#ABCDEFGH23]",
                In_Reply_To="<parent@city.example>",
                References="<root@example.org> <parent@city.example>",
                Content_Language="de-DE")
    msg = parse_email(raw, mail_from="ana@example.org",
                      rcpt_to=["someone@elsewhere.example", f"Help+{token}@City.Example"],
                      limits=LIMITS, reply_secret=SECRET)
    assert msg.sender == "ana@example.org" and msg.sender_name == "Ana Citizen"
    assert msg.provider_id == "m1@example.org|ana@example.org"
    assert msg.thread_key == "m1@example.org"
    assert msg.recipient == f"help@{DOMAIN}"
    assert msg.thread.refs == ("parent@city.example", "root@example.org")
    assert msg.thread.reply_token == token
    assert msg.thread.reference == "ABCDEFGH23"
    assert not msg.thread.continue_latest
    assert msg.language == "de"
    assert msg.meta["rcpt_to"][1] == f"Help+{token}@City.Example"


def test_reply_token_from_our_message_id_and_forged_tokens_ignored() -> None:
    token = make_reply_token(7, SECRET)
    raw = _mail("thanks", In_Reply_To=f"<{token}.abc123@{DOMAIN}>")
    assert parse_email(raw, reply_secret=SECRET).thread.reply_token == token
    forged = make_reply_token(7, b"another secret")
    raw = _mail("thanks", In_Reply_To=f"<{forged}.abc123@{DOMAIN}>")
    assert parse_email(raw, reply_secret=SECRET).thread.reply_token is None


def test_inbox_queue_for_recipient() -> None:
    msg = parse_email(_mail("hole"), rcpt_to=[f"roads@{DOMAIN}"], limits=LIMITS)
    assert msg.recipient == f"roads@{DOMAIN}" and msg.meta["inbox_queue"] == "roads"


def test_missing_message_id_uses_hash_of_raw() -> None:
    raw = b"From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n"
    msg = parse_email(raw)
    assert msg.provider_id.startswith("sha256:") and msg.thread_key is None
    assert "no_message_id" in msg.flags
    assert parse_email(raw).provider_id == msg.provider_id


def test_garbage_never_raises_and_is_flagged() -> None:
    for raw in (b"", b"\x00\xff\xfe" * 100, b"Content-Type: multipart/mixed\r\n\r\n--x\r\n",
                b"From: \xff\xfe@@\r\nSubject: =?bogus?Q?x?=\r\n\r\n\xff"):
        msg = parse_email(raw, mail_from="x@example.org")
        assert msg.provider_id.startswith("sha256:") and msg.sender
        assert msg.raw == raw


def test_wrong_and_unknown_charsets() -> None:
    raw = ("From: a@example.org\r\nMessage-ID: <c@x>\r\nContent-Type: text/plain; "
           "charset=us-ascii\r\n\r\nStra\u00dfe kaputt\r\n").encode()
    assert "Straße" in parse_email(raw).text
    raw = (b"From: a@example.org\r\nMessage-ID: <d@x>\r\nContent-Type: text/plain; "
           b"charset=x-unknown-42\r\n\r\nCaf\xe9\r\n")
    assert parse_email(raw).text.startswith("Caf")


def test_attachment_caps_drop_with_flags() -> None:
    mail = EmailMessage()
    mail["From"] = "a@example.org"
    mail["Message-ID"] = "<att@x>"
    mail.set_content("see attached")
    mail.add_attachment(b"x" * 3000, maintype="application", subtype="pdf", filename="big.pdf")
    for index in range(4):
        mail.add_attachment(b"small", maintype="image", subtype="png", filename=f"{index}.png")
    limits = EmailLimits(max_attachment_bytes=2000, max_attachments=3, domains=(DOMAIN,))
    msg = parse_email(mail.as_bytes(), limits=limits)
    assert [a.filename for a in msg.attachments] == ["0.png", "1.png", "2.png"]
    assert {"attachment_too_large", "too_many_attachments"} <= set(msg.flags)
    assert [d["filename"] for d in msg.meta["dropped_attachments"]] == ["big.pdf", "3.png"]
    assert msg.text == "see attached"


def test_inline_image_and_html_only() -> None:
    mail = EmailMessage()
    mail["From"] = "a@example.org"
    mail["Message-ID"] = "<inl@x>"
    mail.set_content("<p>Look: <img src='cid:photo1'></p><script>x()</script>", subtype="html")
    mail.add_related(b"\x89PNG....", maintype="image", subtype="png", cid="<photo1>")
    msg = parse_email(mail.as_bytes())
    assert msg.text == "Look:" and "text_from_html" in msg.flags
    assert msg.html and "cid:photo1" in msg.html
    (image,) = msg.attachments
    assert image.content_id == "photo1" and image.inline and image.content_type == "image/png"


def test_forwarded_message_is_kept_as_eml_attachment() -> None:
    msg = parse_email((CORPUS / "django-helpdesk" / "forwarded-message.eml").read_bytes())
    assert msg.text
    forwards = [a for a in msg.attachments if a.content_type == "message/rfc822"]
    assert all(a.filename.endswith(".eml") or a.filename for a in forwards)


def test_automatic_detection() -> None:
    cases = {
        "Auto-Submitted": _mail("away", Auto_Submitted="auto-replied"),
        "Precedence": _mail("news", Precedence="bulk"),
        "List-Id": _mail("list", List_Id="<residents.city.example>"),
        "X-Autoreply": _mail("away", X_Autoreply="yes"),
        "subject": _mail("I am away", Subject="Automatic reply: Pothole [#ABCDEFGH23]"),
        "German subject": _mail("weg", Subject="Abwesenheitsnotiz: Pothole"),
    }
    for name, raw in cases.items():
        assert parse_email(raw).automatic, name
    assert parse_email(_mail("hi"), mail_from="").automatic  # MAIL FROM:<>
    assert not parse_email(_mail("hi", Auto_Submitted="no"), mail_from="a@example.org").automatic
    human = parse_email(_mail("About office hours", Subject="Out-of-hours office question?"),
                        mail_from="a@example.org")
    assert not human.automatic


def test_out_of_office_reply_to_our_acknowledgment() -> None:
    """Threads to the conversation (our token in In-Reply-To) and is automatic: no new ack."""
    from hub.adapters.email.outbound import build_message

    token = make_reply_token(3, SECRET)
    ack, ack_id = build_message(OutboundMessage(
        message_id=1, conversation_id=3, channel="email", to="ana@example.org",
        body="We received your message.", idempotency_key="ack-3", reference="ABCDEFGH23",
        subject="Pothole", automatic=True, reply_token=token), f"City <help@{DOMAIN}>")
    raw = _mail("I am on holiday until Monday.", Subject=f"Automatic reply: {ack['Subject']}",
                In_Reply_To=ack["Message-ID"], Auto_Submitted="auto-replied",
                X_Auto_Response_Suppress="All")
    msg = parse_email(raw, mail_from="ana@example.org", rcpt_to=[str(ack["Reply-To"].addresses[0].addr_spec)],
                      limits=LIMITS, reply_secret=SECRET)
    assert msg.automatic and msg.thread.refs == (ack_id,) and msg.thread.reply_token == token
    assert "delivery_report" not in msg.meta
    assert msg.thread.reference == "ABCDEFGH23"


def test_sisimai_rfc3834_autoreplies_are_automatic_not_bounces() -> None:
    for path in sorted((CORPUS / "sisimai-set-of-emails" / "bsd").glob("rfc3834-*.eml")):
        msg = parse_email(path.read_bytes())
        assert msg.automatic, path.name
        assert "delivery_report" not in msg.meta, path.name
