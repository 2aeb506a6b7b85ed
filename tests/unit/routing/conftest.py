"""Helpers for rule-engine tests: a small rule folder written per test, and contexts to decide."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hub.model import InboundAttachment, InboundMessage
from hub.routing import ConversationSnapshot, RoutingContext
from hub.routing.engine import RuleSet
from hub.routing.loader import load_rules

TUESDAY_10 = datetime(2025, 3, 4, 10, 0, tzinfo=UTC)

BASE: dict[str, str] = {
    "settings.toml": 'timezone = "UTC"\nlanguages = ["en", "es"]\n',
    "queues.toml": textwrap.dedent("""\
        [[queue]]
        name = "general"

        [[queue]]
        name = "roads"
        calendar = "office"

        [[queue]]
        name = "waste"

        [[queue]]
        name = "vip"
        """),
    "calendars/office.toml": textwrap.dedent("""\
        timezone = "UTC"
        closed = ["2025-03-12"]
        [hours]
        mon = ["09:00-17:00"]
        tue = ["09:00-17:00"]
        wed = ["09:00-17:00"]
        thu = ["09:00-17:00"]
        fri = ["09:00-17:00"]
        """),
    "lists/vip.txt": "mayor@city.example\n@press.example\n+1 212 555 0100\n",
    "lists/words.txt": "free money\ncasino\n",
    "templates/en/hello.txt": "Subject: Re: {{ subject }} [{{ reference }}]\nHello {{ sender_name }}, ref {{ reference }}.\n",  # noqa: E501
    "templates/es/hello.txt": "Subject: Re: {{ subject }}\nHola, ref {{ reference }}.\n",
    "templates/en/acknowledgment.txt": "Subject: {{ subject }} [{{ reference }}]\nReceived {{ reference }}\n",
    "00-default.toml": '[[rule]]\nid = "default"\nphase = "route"\ndefault = true\nthen.queue = "general"\n',
}


def write_rules(root: Path, files: dict[str, str], *, base: bool = True) -> Path:
    content = {**(BASE if base else {}), **files}
    for rel, text in content.items():
        if text is None:
            continue
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    return tmp_path / "rules"


@pytest.fixture
def make(rules_dir: Path) -> Callable[..., RuleSet]:
    def build(rules: str = "", **files: str) -> RuleSet:
        extra = {k.replace("__", "/").replace("_DOT_", "."): v for k, v in files.items()}
        if rules:
            extra["rules.toml"] = rules
        write_rules(rules_dir, extra)
        return load_rules(rules_dir)

    return build


def ctx(
    text: str = "",
    *,
    subject: str | None = None,
    channel: str = "email",
    sender: str = "jane@example.org",
    recipient: str | None = None,
    now: datetime = TUESDAY_10,
    is_new: bool = True,
    queue: str | None = None,
    tags: tuple[str, ...] = (),
    priority: str = "normal",
    status: str = "open",
    automatic: bool = False,
    attachments: tuple[str, ...] = (),
    recent: tuple[datetime, ...] = (),
    sent: frozenset[str] = frozenset(),
    auto_replies_sent: int = 0,
    language: str | None = None,
    sender_name: str | None = "Jane",
    **extra: Any,
) -> RoutingContext:
    msg = InboundMessage(
        channel=channel,
        provider_id="p1",
        sender=sender,
        text=text,
        subject=subject,
        recipient=recipient,
        automatic=automatic,
        language=language,
        sender_name=sender_name,
        received_at=now,
        attachments=tuple(InboundAttachment(f"f{i}", t, b"") for i, t in enumerate(attachments)),
    )
    conv = ConversationSnapshot(
        id=7,
        is_new=is_new,
        channel=channel,
        status=status,
        queue=queue,
        priority=priority,
        tags=frozenset(tags),
        reference="REF123",
        auto_replies_sent=auto_replies_sent,
    )
    return RoutingContext(
        message=msg,
        conversation=conv,
        contact_id=42,
        now=now,
        recent_inbound=recent,
        sent_auto_replies=sent,
    )


def fired(decision: Any) -> list[str]:
    return [e["rule"] for e in decision.trace if e.get("matched")]
