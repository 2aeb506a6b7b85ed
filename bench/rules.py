"""Rule-engine benchmark: 1,000 generated rules of mixed kinds, 10,000 messages, one core.

Prints the load/compile time, decisions per second and p50/p99/max latency per message.
Goal (issue 4): p99 under 1 ms. Run: python bench/rules.py [--rules N] [--messages N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub.model import InboundAttachment, InboundMessage
from hub.routing import ConversationSnapshot, RoutingContext
from hub.routing.loader import load_rules

WORDS = [
    "pothole",
    "road",
    "street",
    "light",
    "bin",
    "garbage",
    "trash",
    "recycling",
    "permit",
    "licence",
    "noise",
    "music",
    "party",
    "dog",
    "barking",
    "tree",
    "branch",
    "park",
    "bench",
    "water",
    "leak",
    "flood",
    "sewer",
    "parking",
    "ticket",
    "tax",
    "bill",
    "school",
    "bus",
    "graffiti",
    "wall",
    "bridge",
    "crossing",
    "signal",
    "snow",
    "ice",
    "salt",
    "sidewalk",
    "crack",
    "hole",
    "rat",
    "pest",
    "smell",
    "fire",
    "hydrant",
    "library",
    "hours",
    "pool",
    "gym",
    "festival",
    "market",
    "vendor",
    "taxi",
    "bike",
    "lane",
    "speed",
    "camera",
]
FILLER = [
    "hello",
    "please",
    "could",
    "you",
    "the",
    "a",
    "on",
    "in",
    "at",
    "near",
    "my",
    "our",
    "there",
    "is",
    "has",
    "been",
    "since",
    "last",
    "week",
    "today",
    "yesterday",
    "again",
    "thank",
    "you",
    "kind",
    "regards",
    "help",
    "need",
    "report",
    "problem",
    "issue",
    "urgent",
]
CHANNELS = ("email", "sms", "telegram", "webchat", "webform")


def gen_word(rnd: random.Random) -> str:
    return "".join(
        rnd.choice("bcdfghjklmnprstvwz") + rnd.choice("aeiou") for _ in range(rnd.randint(2, 4))
    )


def rule_text(i: int, rnd: random.Random, vocab: list[str]) -> str:
    kind = i % 10
    phase = "route" if i % 5 < 3 else ("enrich" if i % 5 < 4 else "intake")
    head = f'[[rule]]\nid = "r{i}"\nphase = "{phase}"\norder = {i + 1}\n'
    then = f'then.queue = "q{i % 20}"\n' if phase == "route" else f'then.tags.add = ["t{i % 50}"]\n'
    if kind in (0, 1, 2):
        words = ", ".join(f'"{rnd.choice(vocab)}"' for _ in range(rnd.randint(1, 4)))
        when = f"when.content.contains_any = [{words}]\n"
    elif kind in (3, 4):
        a, b = rnd.choice(vocab), rnd.choice(vocab)
        when = f"when.text.matches = '\\b{a}s?\\b.*\\b{b}'\n"
    elif kind == 5:
        when = f'when.sender.in = ["user{i}@example.org", "+1212555{i:04d}"]\n'
    elif kind == 6:
        when = f'when.subject.contains_all = ["{rnd.choice(vocab)}", "{rnd.choice(vocab)}"]\n'
    elif kind == 7:
        when = (
            f'when.channel = "{CHANNELS[i % 5]}"\nwhen.text.contains = "{rnd.choice(vocab)}"\n'
            f"when.attachment_count.gte = 1\n"
        )
    elif kind == 8:
        when = f"when.channel.in = [\"{CHANNELS[i % 5]}\"]\nwhen.content.matches_any = ['{rnd.choice(vocab)}', '{rnd.choice(vocab)} ?{rnd.choice(vocab)}']\n"  # noqa: E501
    else:
        when = (
            f'when.sender.in_list = "list{i % 5}"\nwhen.text.not_contains = "{rnd.choice(vocab)}"\n'
        )
    return head + when + then


def build_folder(root: Path, n_rules: int, rnd: random.Random) -> list[str]:
    vocab = WORDS + [gen_word(rnd) for _ in range(2000)]
    (root / "lists").mkdir(parents=True)
    for k in range(5):
        (root / "lists" / f"list{k}.txt").write_text(
            "\n".join(f"member{k}_{j}@example.org" for j in range(200))
        )
    queues = "".join(f'[[queue]]\nname = "q{k}"\n\n' for k in range(20))
    (root / "queues.toml").write_text(queues)
    (root / "settings.toml").write_text('languages = ["en", "es"]\n')
    body = "\n".join(rule_text(i, rnd, vocab) for i in range(n_rules))
    body += '\n[[rule]]\nid = "default"\nphase = "route"\ndefault = true\nthen.queue = "general"\n'
    body += (
        '\n[[rule]]\nid = "sla"\nphase = "timers"\norder = 1\nwhen.queue = "q1"\n'
        'then.escalate = [{ after = "4h", priority = "urgent" }]\n'
    )
    (root / "rules.toml").write_text(body)
    return vocab


def messages(n: int, rnd: random.Random, vocab: list[str]) -> list[RoutingContext]:
    now = datetime(2025, 3, 4, 15, tzinfo=UTC)
    out = []
    for i in range(n):
        words = [
            rnd.choice(FILLER if rnd.random() < 0.6 else vocab) for _ in range(rnd.randint(10, 120))
        ]
        channel = CHANNELS[i % 5]
        sender = (
            f"user{rnd.randint(0, 2000)}@example.org"
            if channel in ("email", "webform")
            else f"+1212555{rnd.randint(0, 9999):04d}"
        )
        msg = InboundMessage(
            channel=channel,
            provider_id=str(i),
            sender=sender,
            text=" ".join(words).capitalize() + ".",
            subject=" ".join(rnd.choice(vocab) for _ in range(4)) if channel == "email" else None,
            attachments=(InboundAttachment("a.jpg", "image/jpeg", b""),) if i % 7 == 0 else (),
            received_at=now,
        )
        conv = ConversationSnapshot(
            id=i,
            is_new=i % 4 != 0,
            channel=channel,
            status="open",
            queue=None if i % 4 else "q1",
            priority="normal",
            tags=frozenset(),
            reference="R",
        )
        out.append(
            RoutingContext(
                message=msg,
                conversation=conv,
                contact_id=i,
                now=now,
                recent_inbound=(now - timedelta(hours=1),),
            )
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rules", type=int, default=1000)
    ap.add_argument("--messages", type=int, default=10000)
    args = ap.parse_args()
    rnd = random.Random(2025)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "rules"
        root.mkdir()
        vocab = build_folder(root, args.rules, rnd)
        t0 = time.perf_counter()
        rs = load_rules(root)
        load_s = time.perf_counter() - t0
    ctxs = messages(args.messages, rnd, vocab)
    for c in ctxs[:200]:  # warm-up: regex caches, lazy structures
        rs.decide(c)
    lat = []
    matched = 0
    t_all = time.perf_counter()
    for c in ctxs:
        t = time.perf_counter()
        d = rs.decide(c)
        lat.append(time.perf_counter() - t)
        matched += sum(1 for e in d.trace if e.get("matched"))
    total = time.perf_counter() - t_all
    lat.sort()
    q = statistics.quantiles(lat, n=100)
    print(f"rules: {args.rules} (+ default, timer) loaded and compiled in {load_s * 1000:.0f} ms")
    print(
        f"messages: {args.messages}, text 10-120 words, {matched / len(ctxs):.1f} rules matched per message"
    )
    print(f"decisions/s: {len(ctxs) / total:,.0f} (one core, trace built for every decision)")
    print(
        f"latency per message: p50 {q[49] * 1e6:.0f} us, p99 {q[98] * 1e6:.0f} us, max {lat[-1] * 1e6:.0f} us"
    )
    print("goal p99 < 1 ms:", "met" if q[98] < 0.001 else "NOT met")


if __name__ == "__main__":
    main()
