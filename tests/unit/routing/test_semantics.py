"""Actions and phase semantics: first match vs all, stop, spam, snapshots, conflicts, guards."""

from __future__ import annotations

import json
from datetime import timedelta

from hub.routing.explain import to_json, to_text
from tests.unit.routing.conftest import TUESDAY_10, ctx, fired

ROUTE = """
[[rule]]
id = "roads"
phase = "route"
order = 200
when.text.contains = "pothole"
then.queue = "roads"
then.priority = "high"
then.tags.add = ["roads"]

[[rule]]
id = "waste"
phase = "route"
order = 100
when.text.contains = "bin"
then.queue = "waste"
"""


def test_route_first_match_by_order_wins(make) -> None:
    rs = make(ROUTE)
    d = rs.decide(ctx("a pothole next to my bin"))
    assert d.queue == "waste"  # order 100 beats 200 although written later
    assert fired(d) == ["waste"]
    assert "roads" not in [e.get("rule") for e in d.trace]  # never evaluated after the first match


def test_default_rule_catches_the_rest(make) -> None:
    rs = make(ROUTE)
    d = rs.decide(ctx("hello"))
    assert d.queue == "general" and fired(d) == ["default"]
    assert rs.default_queue == "general"


def test_reply_keeps_its_queue(make) -> None:
    rs = make(ROUTE)
    d = rs.decide(ctx("pothole", is_new=False, queue="waste"))
    assert d.queue is None
    assert any(e.get("note", "").startswith("reply") for e in d.trace)


def test_actions_priority_tags_assign_status(make) -> None:
    rs = make(
        ROUTE
        + """
        [[rule]]
        id = "enrich"
        phase = "enrich"
        order = 1
        when.text.contains = "pothole"
        then.tags.add = ["x"]
        then.tags.remove = ["old"]
        then.assign = "lead@city.example"
        then.status = "pending"
        """
    )
    d = rs.decide(ctx("pothole", tags=("old",)))
    assert (d.queue, d.priority) == ("roads", "high")
    assert set(d.tags_add) == {"roads", "x"} and d.tags_remove == ("old",)
    assert d.assign == "lead@city.example" and d.status == "pending"


def test_enrich_fires_every_match_and_conflicts_resolve_deterministically(make) -> None:
    rs = make("""
        [[rule]]
        id = "b-low"
        phase = "enrich"
        order = 20
        when.text.contains = "x"
        then.priority = "low"
        then.status = "pending"
        then.tags.remove = ["t"]

        [[rule]]
        id = "a-urgent"
        phase = "enrich"
        order = 30
        when.text.contains = "x"
        then.priority = "urgent"
        then.status = "resolved"

        [[rule]]
        id = "c-tag"
        phase = "enrich"
        order = 10
        when.text.contains = "x"
        then.tags.add = ["t"]
        """)
    d = rs.decide(ctx("x"))
    assert sorted(fired(d)) == ["a-urgent", "b-low", "c-tag", "default"]
    assert d.priority == "urgent"  # highest priority wins
    assert d.status == "pending"  # lowest order wins
    assert d.tags_add == ("t",)  # c-tag (order 10) beats b-low's removal (order 20)
    low = next(e for e in d.trace if e.get("rule") == "b-low")
    assert "a-urgent" in low["overridden"]["priority"] and "c-tag" in low["overridden"]["tag:t"]
    urgent = next(e for e in d.trace if e.get("rule") == "a-urgent")
    assert "b-low" in urgent["overridden"]["status"]
    json.dumps(d.trace)  # the trace is JSON


def test_snapshot_rules_of_a_phase_do_not_see_each_other(make) -> None:
    rs = make("""
        [[rule]]
        id = "first"
        phase = "enrich"
        order = 1
        when.text.contains = "x"
        then.tags.add = ["a"]

        [[rule]]
        id = "second"
        phase = "enrich"
        order = 2
        when.tags.has = "a"
        then.tags.add = ["b"]

        [[rule]]
        id = "after-route"
        phase = "enrich"
        order = 3
        when.queue = "general"
        then.tags.add = ["seen-route"]
        """)
    d = rs.decide(ctx("x"))
    assert "a" in d.tags_add and "b" not in d.tags_add  # no re-triggering inside a phase
    assert "seen-route" in d.tags_add  # the next phase sees the previous phase's result


def test_intake_stop_ends_processing(make) -> None:
    rs = make("""
        [[rule]]
        id = "block"
        phase = "intake"
        order = 1
        when.sender.in_list = "vip"
        then.stop = true
        then.tags.add = ["blocked"]

        [[rule]]
        id = "also"
        phase = "intake"
        order = 2
        when.text.contains = "x"
        then.tags.add = ["also"]
        """)
    d = rs.decide(ctx("x", sender="mayor@city.example"))
    assert d.stopped and not d.spam and d.queue is None
    assert set(d.tags_add) == {"blocked", "also"}  # the intake phase completes, then stops
    assert "default" not in fired(d)


def test_spam_is_flagged_never_queued_never_answered(make) -> None:
    rs = make("""
        [[rule]]
        id = "spam"
        phase = "intake"
        order = 1
        when.text.contains_list = "words"
        then.spam = true

        [[rule]]
        id = "reply"
        phase = "intake"
        order = 2
        when.text.contains = "casino"
        then.auto_reply = { template = "hello", once_per = "1d" }
        """)
    d = rs.decide(ctx("best CASINO"))
    assert d.spam and d.stopped and d.queue is None and d.auto_replies == () and d.timers == ()


def test_auto_reply_in_language_with_once_per_and_guards(make) -> None:
    rs = make("""
        [[rule]]
        id = "hello"
        phase = "enrich"
        order = 1
        when.new_conversation = true
        then.auto_reply = { template = "hello", once_per = "24h" }

        [[rule]]
        id = "hello-again"
        phase = "enrich"
        order = 2
        when.new_conversation = true
        then.auto_reply = { template = "hello", once_per = "1h", scope = "conversation" }
        """)
    d = rs.decide(
        ctx(
            "Hola, el camión de la basura no pasó por mi calle esta semana",
            subject="Basura\nBcc: x",
        )
    )
    (reply,) = d.auto_replies  # one per message: the lowest order wins
    assert reply.language == "es" and reply.body.startswith("Hola, ref REF123")
    assert reply.subject == "Re: Basura Bcc: x"  # one line: citizen text never breaks headers
    assert reply.once_per_key == "rule:hello:contact:42" and reply.once_per_seconds == 86400
    guard = [e for e in d.trace if e.get("guard")]
    assert guard and guard[0]["rule"] == "hello-again"

    d2 = rs.decide(
        ctx("Hello there, my bin was not collected this week", sent=frozenset({reply.once_per_key}))
    )
    assert [r.rule_id for r in d2.auto_replies] == ["hello-again"]  # hello is inside its window
    assert d2.auto_replies[0].once_per_key == "rule:hello-again:conversation:7"
    assert d2.auto_replies[0].language == "en" and "Jane" in d2.auto_replies[0].body

    assert rs.decide(ctx("Hello there, automatic reply", automatic=True)).auto_replies == ()
    assert (
        rs.decide(ctx("Hello there", auto_replies_sent=3)).auto_replies == ()
    )  # per-conversation cap


def test_template_is_never_evaluated_from_citizen_text(make) -> None:
    rs = make("""
        [[rule]]
        id = "hello"
        phase = "enrich"
        order = 1
        when.new_conversation = true
        then.auto_reply = { template = "hello", once_per = "24h" }
        """)
    d = rs.decide(
        ctx(
            "x",
            subject="{{ 7*7 }} {% for x in range(3) %}y{% endfor %}",
            sender_name="{{ reference }}",
        )
    )
    (reply,) = d.auto_replies
    assert "{{ 7*7 }}" in reply.subject and "49" not in reply.subject
    assert "Hello {{ reference }}" in reply.body


def test_notify_and_timers(make) -> None:
    rs = make("""
        [[rule]]
        id = "tell"
        phase = "enrich"
        order = 1
        when.text.contains = "pothole"
        then.notify = [
          { email = "lead@city.example", text = "{{ reference }} in {{ queue }}" },
          { webhook = "https://hooks.example/x" },
        ]

        [[rule]]
        id = "roads"
        phase = "route"
        order = 1
        when.text.contains = "pothole"
        then.queue = "roads"

        [[rule]]
        id = "sla"
        phase = "timers"
        order = 1
        when.queue = "roads"
        then.escalate = [
          { after = "2h", priority = "urgent" },
          { name = "boss", after = 600, queue = "vip", notify = { email = "boss@city.example" } },
        ]
        """)
    d = rs.decide(ctx("pothole", now=TUESDAY_10))
    assert next((n.kind, n.target, n.text) for n in d.notifications) == (
        "email",
        "lead@city.example",
        "REF123 in roads",
    )
    assert d.notifications[1].kind == "webhook"
    steps = {t.step: t for t in d.timers}
    assert steps["step1"].due_at == TUESDAY_10 + timedelta(
        hours=2
    )  # queue roads uses calendar office
    assert steps["step1"].actions["priority"] == "urgent"
    # 600 business minutes from Tue 10:00 with 09-17 hours: 7h on Tuesday, 3h on Wednesday.
    assert steps["boss"].due_at == TUESDAY_10 + timedelta(days=1, hours=2)
    assert (
        steps["boss"].actions["queue"] == "vip"
        and steps["boss"].actions["notify"][0]["target"] == "boss@city.example"
    )


def test_explain_text_and_json(make) -> None:
    rs = make(ROUTE)
    d = rs.decide(ctx("pothole"))
    assert "MATCH route   roads" in to_text(d)
    data = json.loads(to_json(d))
    assert data["queue"] == "roads" and data["rules_version"] == rs.version


def test_version_is_a_content_hash(make, rules_dir) -> None:
    v1 = make(ROUTE).version
    assert make(ROUTE).version == v1
    assert make(ROUTE.replace("pothole", "potholes")).version != v1
