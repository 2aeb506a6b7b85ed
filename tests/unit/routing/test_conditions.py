"""Every condition field and operator: one message that matches and one that does not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.unit.routing.conftest import TUESDAY_10, ctx

SATURDAY = datetime(2025, 3, 8, 10, 0, tzinfo=UTC)
EVENING = datetime(2025, 3, 4, 20, 0, tzinfo=UTC)

CASES = [
    ('channel = "sms"', {"channel": "sms", "sender": "+12125550123"}, {"channel": "email"}),
    ('channel.in = ["sms", "telegram"]', {"channel": "telegram", "sender": "123"}, {}),
    ('channel.not_in = ["email"]', {"channel": "webchat", "sender": "v1"}, {}),
    ('sender = "Bob@Example.org"', {"sender": "bob@example.org"}, {}),
    (
        'sender.in = ["+1 212 555 0199"]',
        {"channel": "sms", "sender": "+12125550199"},
        {"channel": "sms", "sender": "+12125550198"},
    ),
    ('sender.in_list = "vip"', {"sender": "mayor@city.example"}, {}),
    (
        'sender.in_list = "vip"',
        {"sender": "editor@press.example"},
        {"sender": "x@notpress.example"},
    ),
    (
        'sender.in_list = "vip"',
        {"channel": "sms", "sender": "+12125550100"},
        {"channel": "sms", "sender": "+12125550101"},
    ),
    ('sender.not_in_list = "vip"', {}, {"sender": "mayor@city.example"}),
    ('sender.ends_with = "@city.example"', {"sender": "clerk@city.example"}, {}),
    ('sender.matches = "^clerk"', {"sender": "clerk@city.example"}, {}),
    (
        'recipient.equals = "roads@city.example"',
        {"recipient": "Roads@City.example"},
        {"recipient": "help@city.example"},
    ),
    ('text.contains = "Pothole"', {"text": "A big POTHOLE here"}, {"text": "A big hole"}),
    ('text = "pothole"', {"text": "potholes everywhere"}, {"text": "pot hole"}),
    (
        'text.contains_any = ["bin", "trash"]',
        {"text": "my TRASH was not collected"},
        {"text": "nothing"},
    ),
    ('text.contains_all = ["bin", "missed"]', {"text": "missed the bin"}, {"text": "the bin"}),
    ('text.not_contains = "thanks"', {"text": "hello"}, {"text": "Thanks!"}),
    ('text.contains_list = "words"', {"text": "Win FREE MONEY now"}, {"text": "free time"}),
    ('text.contains = "straße"', {"text": "Die STRASSE ist kaputt"}, {"text": "Die Strase"}),
    ("text.matches = '\\bpot ?holes?\\b'", {"text": "Pot holes!"}, {"text": "teapot hole"}),
    (
        "text.matches_any = ['\\bgraffiti\\b', 'vandal(ism)?']",
        {"text": "Vandalism on the bridge"},
        {"text": "graffitis"},
    ),
    ("text.not_matches = '\\d{5}'", {"text": "no zip"}, {"text": "zip 10001"}),
    ("text.matches = 'caf[eé]'", {"text": "CAFÉ on Main"}, {"text": "cafeteria"[:3]}),
    (
        'subject.contains = "permit"',
        {"subject": "Permit request", "text": "x"},
        {"subject": "x", "text": "permit"},
    ),
    (
        'content.contains = "permit"',
        {"subject": "x", "text": "permit"},
        {"subject": "x", "text": "y"},
    ),
    ('content.contains = "permit"', {"subject": "Permit", "text": "y"}, {}),
    (
        'language = "es"',
        {"text": "Hola, el camión de la basura no pasó por mi calle esta semana"},
        {"text": "Hello, the garbage truck did not come down my street this week"},
    ),
    ('language.in = ["es"]', {"text": "short", "language": "es"}, {"text": "short"}),
    (
        "attachment_count.gte = 2",
        {"attachments": ("image/png", "application/pdf")},
        {"attachments": ("image/png",)},
    ),
    ("attachment_count = 0", {}, {"attachments": ("image/png",)}),
    (
        'attachment_type.in = ["image/*"]',
        {"attachments": ("image/jpeg",)},
        {"attachments": ("application/pdf",)},
    ),
    (
        'attachment_type.not_in = ["application/x-msdownload"]',
        {},
        {"attachments": ("application/x-msdownload",)},
    ),
    ('calendar.within = "office"', {"now": TUESDAY_10}, {"now": EVENING}),
    ('calendar.outside = "office"', {"now": SATURDAY}, {"now": TUESDAY_10}),
    (
        'calendar.outside = "office"',
        {"now": datetime(2025, 3, 12, 10, tzinfo=UTC)},
        {},
    ),  # closed date
    ('weekday.in = ["sat", "sun"]', {"now": SATURDAY}, {"now": TUESDAY_10}),
    ('weekday = ["tue"]', {"now": TUESDAY_10}, {"now": SATURDAY}),
    ('time.between = ["18:00", "08:00"]', {"now": EVENING}, {"now": TUESDAY_10}),
    ('time.not_between = ["09:00", "17:00"]', {"now": EVENING}, {"now": TUESDAY_10}),
    ("new_conversation = true", {"is_new": True}, {"is_new": False, "queue": "general"}),
    ("automatic = true", {"automatic": True}, {}),
    ('status = "pending"', {"status": "pending"}, {}),
    (
        'queue.in = ["roads"]',
        {"queue": "roads", "is_new": False},
        {"queue": "waste", "is_new": False},
    ),
    ('priority.at_least = "high"', {"priority": "urgent"}, {"priority": "normal"}),
    ('priority.at_most = "low"', {"priority": "low"}, {"priority": "normal"}),
    ('priority = "high"', {"priority": "high"}, {}),
    ('tags.has = "vip"', {"tags": ("vip",)}, {"tags": ("x",)}),
    ('tags.has_all = ["a", "b"]', {"tags": ("a", "b", "c")}, {"tags": ("a",)}),
    ('tags.has_none = ["a"]', {"tags": ("b",)}, {"tags": ("a",)}),
    (
        "recent_messages = { days = 7, at_least = 2 }",
        {"recent": (TUESDAY_10 - timedelta(days=1), TUESDAY_10 - timedelta(days=2))},
        {"recent": (TUESDAY_10 - timedelta(days=1), TUESDAY_10 - timedelta(days=9))},
    ),
    (
        "recent_messages = { days = 7, at_most = 0 }",
        {},
        {"recent": (TUESDAY_10 - timedelta(hours=1),)},
    ),
    (
        'any = [ { channel = "sms" }, { text.contains = "urgent" } ]',
        {"text": "URGENT"},
        {"text": "later"},
    ),
    (
        'all = [ { text.contains = "a1" }, { text.contains = "b2" } ]',
        {"text": "a1 b2"},
        {"text": "a1"},
    ),
    ('not = { text.contains = "test" }', {"text": "real"}, {"text": "a test"}),
]


@pytest.mark.parametrize(("when", "yes", "no"), CASES, ids=[c[0][:40] for c in CASES])
def test_condition(make, when: str, yes: dict, no: dict) -> None:
    rules = f"""
        [[rule]]
        id = "probe"
        phase = "enrich"
        order = 1
        when.{when}
        then.tags.add = ["hit"]
        """
    rs = make(rules)
    base = {"text": "", "queue": None}
    assert "hit" in rs.decide(ctx(**{**base, **yes})).tags_add, f"{when} should match {yes}"
    assert "hit" not in rs.decide(ctx(**{**base, **no})).tags_add, f"{when} should not match {no}"


def test_trace_shows_compared_values_shortened(make) -> None:
    rs = make("""
        [[rule]]
        id = "probe"
        phase = "enrich"
        order = 1
        when.sender.in = ["jane@example.org"]
        when.text.contains = "pothole"
        then.tags.add = ["x"]
        """)
    d = rs.decide(
        ctx(
            "There is a very large pothole on the corner of Elm and Main street",
            sender="jane@example.org",
        )
    )
    entry = next(e for e in d.trace if e.get("rule") == "probe")
    assert entry["matched"] is True and entry["source"].endswith("rules.toml:3")
    values = {c["clause"]: c["value"] for c in entry["clauses"]}
    assert values["sender.in"] == "j***@example.org"
    assert values["text.contains"].endswith("…") and len(values["text.contains"]) == 41
    d2 = rs.decide(ctx("pothole", channel="sms", sender="+12125550123"))
    entry2 = next(e for e in d2.trace if e.get("rule") == "probe")
    assert entry2["clauses"][0]["value"] == "***0123"
