"""`hub rules check | explain | test | replay`: the admins' tools, as functions and subcommands.

Every problem is printed as `path:line: message` (or one plain line) and turned into an exit
code; no stack trace ever reaches an admin.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hub.adapters.email.normalize import DEFAULT_LIMITS, EmailLimits, parse_email
from hub.model import InboundAttachment, InboundMessage, ThreadHints
from hub.routing import ConversationSnapshot, RoutingContext
from hub.routing.engine import RuleSet
from hub.routing.errors import RuleSetInvalid
from hub.routing.explain import to_json, to_text
from hub.routing.loader import check_rules, load_rules
from hub.routing.testing import run_tests


def _print_errors(errors: Any) -> None:
    for e in errors:
        print(str(e), file=sys.stderr)


def _load(rules_dir: Path | str, default_queue: str = "general") -> RuleSet | None:
    try:
        return load_rules(rules_dir, default_queue=default_queue)
    except RuleSetInvalid as exc:
        _print_errors(exc.errors)
        return None


def check(rules_dir: Path | str, *, default_queue: str = "general") -> int:
    """Validation and the folder's rule tests: what the running hub requires before a set goes
    live, so `ok` here means the hub takes it."""
    errors = check_rules(rules_dir, default_queue=default_queue)
    if errors:
        _print_errors(errors)
        return 1
    ruleset = _load(rules_dir, default_queue)
    if ruleset is None:
        return 1
    count, failures = run_tests(ruleset)
    _print_errors(failures)
    if failures:
        print(f"{rules_dir}: valid, but {len(failures)} of {count} rule tests failed: "
              "the hub refuses this set", file=sys.stderr)
        return 1
    print(f"{rules_dir}: ok (rules {ruleset.version}, {len(ruleset.forms)} forms, "
          f"{count} rule tests passed)")
    return 0


def test(rules_dir: Path | str, *, default_queue: str = "general") -> int:
    ruleset = _load(rules_dir, default_queue)
    if ruleset is None:
        return 1
    count, failures = run_tests(ruleset)
    _print_errors(failures)
    print(f"{count} rule tests, {len(failures)} failed")
    return 1 if failures else 0


def read_message(path: Path, limits: EmailLimits = DEFAULT_LIMITS) -> InboundMessage:
    """An .eml file (through the email channel's normaliser, with the configured domains and
    inboxes, so the recipient counts as in production) or a JSON InboundMessage."""
    raw = path.read_bytes()
    if path.suffix.lower() != ".json":
        return parse_email(raw, limits=limits)
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("the JSON file must hold one object (an InboundMessage)")
    data.setdefault("provider_id", path.name)
    if "received_at" in data:
        data["received_at"] = datetime.fromisoformat(data["received_at"])
    data["attachments"] = tuple(
        InboundAttachment(
            a.get("filename", "file"), a.get("content_type", "application/octet-stream"), b""
        )
        for a in data.get("attachments", [])
    )
    data["thread"] = ThreadHints()
    for key in ("flags", "extra_identities"):
        if key in data:
            data[key] = tuple(data[key])
    return InboundMessage(**data)


def explain(
    file: Path | str,
    *,
    rules_dir: Path | str,
    as_json: bool = False,
    now: datetime | None = None,
    reply: bool = False,
    default_queue: str = "general",
    limits: EmailLimits = DEFAULT_LIMITS,
    live_version: str | None = None,
) -> int:
    ruleset = _load(rules_dir, default_queue)
    if ruleset is None:
        return 1
    try:
        msg = read_message(Path(file), limits)
    except (OSError, ValueError, TypeError) as exc:
        print(f"{file}: cannot read the message: {exc}", file=sys.stderr)
        return 1
    conv = ConversationSnapshot(
        id=0,
        is_new=not reply,
        channel=msg.channel,
        status="open",
        queue=ruleset.default_queue if reply else None,
        priority="normal",
        tags=frozenset(),
        reference="EXPLAIN",
    )
    ctx = RoutingContext(message=msg, conversation=conv, contact_id=0, now=now or msg.received_at)
    decision = ruleset.decide(ctx)
    print(f"explained with rules {ruleset.version} from {rules_dir}", file=sys.stderr)
    if live_version is not None and live_version != ruleset.version:
        print(f"warning: the hub is routing with rules {live_version}, not {ruleset.version}: "
              "this explanation is of the folder as it is now", file=sys.stderr)
    print(to_json(decision) if as_json else to_text(decision))
    return 0


def hub_live_version(db_url: str) -> str | None:
    """The version the hub last put live (it records each one), or None if unknown."""
    from sqlalchemy import select
    from sqlalchemy.engine import make_url

    from hub.storage.db import Database
    from hub.storage.tables import AuditEntry

    database = make_url(db_url).database
    if db_url.startswith("sqlite") and (not database or not Path(database).exists()):
        return None  # no hub has run here: nothing to compare with (and no file to create)

    async def read() -> str | None:
        db = Database(db_url)
        try:
            async with db.read() as session:
                return await session.scalar(
                    select(AuditEntry.target_id).where(AuditEntry.action == "rules.live")
                    .order_by(AuditEntry.id.desc()).limit(1))
        except Exception:  # no database yet, or not migrated: nothing to compare with
            return None
        finally:
            await db.dispose()

    return asyncio.run(read())


def replay(
    since: datetime,
    *,
    rules_dir: Path | str,
    db_url: str,
    limit: int | None = None,
    default_queue: str = "general",
) -> int:
    from hub.routing.replay import replay as run_replay
    from hub.storage.db import Database

    ruleset = _load(rules_dir, default_queue)
    if ruleset is None:
        return 1

    async def go() -> int:
        db = Database(db_url)
        try:
            result = await run_replay(db.read, ruleset, since, limit=limit)
        finally:
            await db.dispose()
        print("\n".join(result.lines(ruleset.version, since)))
        return 0

    return asyncio.run(go())


# ---------------------------------------------------------------- argparse wiring


def _settings(args: argparse.Namespace) -> Any:
    """The hub's settings when a config is given or found; None when the rules tools run alone."""
    try:
        from hub.config import load_settings

        return load_settings(getattr(args, "config", None))
    except Exception:  # a rules check must work without a valid hub config
        return None


def _dir(args: argparse.Namespace, attr: str = "dir") -> tuple[Path, str]:
    settings = _settings(args)
    given = getattr(args, attr, None)
    default_queue = settings.routing.default_queue if settings else "general"
    if given:
        return Path(given), default_queue
    return (Path(settings.routing.rules_dir) if settings else Path("routing_rules")), default_queue


def _since(text: str) -> datetime:
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _cmd_check(args: argparse.Namespace) -> int:
    path, dq = _dir(args)
    return check(path, default_queue=dq)


def _cmd_test(args: argparse.Namespace) -> int:
    path, dq = _dir(args)
    return test(path, default_queue=dq)


def _cmd_explain(args: argparse.Namespace) -> int:
    path, dq = _dir(args, "rules")
    now = _since(args.now) if args.now else None
    settings = _settings(args)
    limits = EmailLimits.from_settings(settings.smtp) if settings else DEFAULT_LIMITS
    live = hub_live_version(settings.database.url) if settings else None
    return explain(args.file, rules_dir=path, as_json=args.json, now=now, reply=args.reply,
                   default_queue=dq, limits=limits, live_version=live)


def _cmd_replay(args: argparse.Namespace) -> int:
    path, dq = _dir(args, "rules")
    settings = _settings(args)
    db_url = args.db_url or (settings.database.url if settings else "sqlite+aiosqlite:///hub.db")
    try:
        since = _since(args.since)
    except ValueError:
        print(f"--since: not a date: {args.since!r} (use YYYY-MM-DD)", file=sys.stderr)
        return 2
    return replay(since, rules_dir=path, db_url=db_url, limit=args.limit, default_queue=dq)


def register(subparsers: Any, common: argparse.ArgumentParser | None = None) -> None:
    """Add `rules check|explain|test|replay` to the `hub` command's subparsers."""
    parents = [common] if common is not None else []
    rules = subparsers.add_parser("rules", help="check, explain, test and replay routing rules")
    sub = rules.add_subparsers(dest="rules_command", required=True)
    c = sub.add_parser("check", parents=parents, help="validate rule files (path:line: message)")
    c.add_argument("dir", nargs="?", help="rule folder (default: [routing] rules_dir)")
    c.set_defaults(func=_cmd_check)
    t = sub.add_parser("test", parents=parents, help="run the rule tests in <dir>/tests")
    t.add_argument("dir", nargs="?")
    t.set_defaults(func=_cmd_test)
    e = sub.add_parser(
        "explain", parents=parents, help="route one message (.eml or JSON) and show why"
    )
    e.add_argument("file")
    e.add_argument("--rules", help="rule folder (default: [routing] rules_dir)")
    e.add_argument("--json", action="store_true", help="machine-readable output")
    e.add_argument("--now", help="pretend it is this ISO time (default: the message's time)")
    e.add_argument("--reply", action="store_true", help="as a reply to an existing conversation")
    e.set_defaults(func=_cmd_explain)
    r = sub.add_parser(
        "replay", parents=parents, help="re-route stored traffic with a candidate rule set"
    )
    r.add_argument("--since", required=True, help="YYYY-MM-DD or ISO datetime")
    r.add_argument("--rules", help="candidate rule folder (default: [routing] rules_dir)")
    r.add_argument("--db-url", help="database URL (default: the config's)")
    r.add_argument("--limit", type=int, default=None)
    r.set_defaults(func=_cmd_replay)
