"""`[smtp] inboxes` is an input of the rules, on both databases: mail to roads@ that no route rule
claims goes to queue roads, says so in its trace, gets the roads SLA clock, and `rules explain`
and `rules replay` agree with what production did; rules can test the inbox (`when.inbox`)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from hub.adapters.email import EmailLimits
from hub.app import Hub
from hub.routing import ConversationSnapshot, RoutingContext
from hub.routing.cli import explain, read_message
from hub.routing.loader import load_rules
from hub.routing.replay import replay
from hub.storage.tables import Conversation, ConversationTimer, RoutingDecisionRow

from .conftest import DOMAIN, RULES, arrive, citizen_mail

TUESDAY = datetime.fromisoformat("2025-03-04T10:00:00-05:00")
ROADS = f"roads@{DOMAIN}"
NO_TOPIC = "Hello, could someone call me back about my question? Thanks."


async def test_mail_to_an_inbox_no_rule_claims_goes_to_its_queue(city: Hub) -> None:
    raw, _ = citizen_mail(NO_TOPIC, to=ROADS, subject="A question")
    await arrive(city, raw, TUESDAY, rcpt=ROADS)
    async with city.db.read() as session:
        (conversation,) = await session.scalars(select(Conversation))
        (decision,) = await session.scalars(select(RoutingDecisionRow))
        timers = {t.rule_id for t in await session.scalars(select(ConversationTimer))}
    assert conversation.queue == "roads"
    inbox = [step for step in decision.trace if step.get("rule") == "inbox"]
    assert inbox and inbox[0]["actions"] == {"queue": "roads"}
    assert timers == {"sla.roads"}  # the roads clock, not general's

    result = await replay(city.db.read, city.rules.current, TUESDAY.replace(year=2024),  # type: ignore[union-attr, arg-type]
                          progress=None)
    assert result.total == 1 and result.changed == 0


async def test_a_topic_rule_still_wins_over_the_inbox(city: Hub) -> None:
    raw, _ = citizen_mail("The noise from the bar is terrible every night", to=ROADS,
                          subject="Noise")
    await arrive(city, raw, TUESDAY, rcpt=ROADS)
    general, _ = citizen_mail(NO_TOPIC, from_="Bo <bo@example.org>", subject="A question")
    await arrive(city, general, TUESDAY, sender="bo@example.org")
    async with city.db.read() as session:
        queues = list(await session.scalars(select(Conversation.queue).order_by(Conversation.id)))
    assert queues == ["noise", "general"]


def test_explain_takes_the_recipient_into_account(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    raw, _ = citizen_mail(NO_TOPIC, to=ROADS, subject="A question")
    eml = tmp_path / "to-roads.eml"
    eml.write_bytes(raw)
    limits = EmailLimits(domains=(DOMAIN,), inboxes={ROADS: "roads"})
    assert read_message(eml, limits).inbox_queue == "roads"
    assert explain(eml, rules_dir=RULES, as_json=True, limits=limits, now=TUESDAY) == 0
    assert json.loads(capsys.readouterr().out)["queue"] == "roads"


def test_rules_can_test_the_inbox(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    for path in RULES.rglob("*"):
        if path.is_file():
            target = rules / path.relative_to(RULES)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    (rules / "15-inbox.toml").write_text(
        '[[rule]]\nid = "inbox.roads-urgent"\nphase = "enrich"\norder = 1\n'
        'when.inbox = "roads"\nthen.priority = "high"\n')
    ruleset = load_rules(rules)
    limits = EmailLimits(domains=(DOMAIN,), inboxes={ROADS: "roads"})
    eml = tmp_path / "m.eml"
    eml.write_bytes(citizen_mail(NO_TOPIC, to=ROADS, subject="A question")[0])
    msg = read_message(eml, limits)
    snapshot = ConversationSnapshot(id=1, is_new=True, channel="email", status="open",
                                    queue=None, priority="normal", tags=frozenset(),
                                    reference="REF")
    decision = ruleset.decide(RoutingContext(message=msg, conversation=snapshot, contact_id=1,
                                             now=TUESDAY))
    assert decision.queue == "roads" and decision.priority == "high"


async def test_a_bare_reference_in_the_subject_continues_for_its_own_contact(city: Hub) -> None:
    raw, _ = citizen_mail("The neighbours play loud music every night.", subject="noise")
    first = await arrive(city, raw, TUESDAY)
    async with city.db.read() as session:
        reference = (await session.get_one(Conversation, first.conversation_id)).reference
    again, _ = citizen_mail("It happened again last night.", subject=f"Re: noise {reference}")
    own = await arrive(city, again, TUESDAY.replace(hour=11))
    stranger, _ = citizen_mail("What is this case about?", subject=f"Re: noise {reference}",
                               from_="Mallory <mallory@example.net>")
    other = await arrive(city, stranger, TUESDAY.replace(hour=12), sender="mallory@example.net")
    assert own.conversation_id == first.conversation_id and not own.new_conversation
    assert other.conversation_id != first.conversation_id and other.new_conversation
