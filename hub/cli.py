"""The `hub` command: serve, worker, db, staff, token, spool, outbox, rules.

Every command takes `--config PATH` (or HUB_CONFIG). Problems are one-line messages on stderr
with a non-zero exit: 2 for configuration and usage, 1 for everything else. No stack traces.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from hub.adapters.base import CannotListen
from hub.channels import unbuilt_channels
from hub.config import ConfigError, Settings, load_settings
from hub.gc_tuning import tune_after_start

log = logging.getLogger("hub")


class CommandError(Exception):
    exit_code = 1


class ListenError(CommandError):
    """A port that cannot be had is a configuration problem: exit 2, like a bad key."""

    exit_code = 2


def _folders(settings: Settings) -> list[str]:
    return [f"data folder {Path(settings.hub.data_dir).resolve()}"]


def shown_url(url: str) -> str:
    """The database in use, as an absolute path for SQLite and without a password otherwise."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:"):
        return f"sqlite {Path(parsed.database or '').resolve()}"
    return parsed.render_as_string(hide_password=True)


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


# Provider libraries log every request at INFO: twilio the numbers and texts of each SMS,
# httpx (under python-telegram-bot) the Bot API URL with the bot's token in it. Personal data
# and secrets stay out of the hub's logs; their warnings and errors still come through.
QUIET_LOGGERS = ("twilio", "httpx", "httpcore", "telegram")


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.hub.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))


# -- serve ------------------------------------------------------------------------------------

async def _serve(settings: Settings, ready: Callable[[list[str]], None] | None = None) -> None:
    from aiohttp import web

    from hub.app import Hub
    from hub.arrivals import Arrivals, arrivals_path
    from hub.web.app import create_app
    from hub.workprocess import WorkProcess

    for warning in unbuilt_channels(settings):
        print(f"hub: warning: {warning}", file=sys.stderr, flush=True)
    work = (WorkProcess(settings) if settings.embedded and settings.hub.work_process
            else None)
    hub = Hub(settings, jobs=work.jobs if work is not None else None)
    if work is not None:
        hub.work_process = work  # from here on, `hub.stop()` stops it too
        await work.launch()
    try:
        await hub.prepare()
    except BaseException:
        if work is not None:
            await work.stop()
        raise
    if work is not None and arrivals_path(settings.database.url) is not None:
        hub.spool.arrivals = Arrivals(settings.database.url)
    runner = web.AppRunner(create_app(hub), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.http.host, settings.http.port)
    try:
        await site.start()
        addresses = await hub.start(prepared=True, work=False if work is not None else None)
        if work is not None:
            await work.start(hub)
    except (OSError, CannotListen) as exc:
        await runner.cleanup()
        await hub.stop()
        if isinstance(exc, CannotListen):
            raise ListenError(str(exc)) from None
        raise ListenError(f"cannot listen on {settings.http.host}:{settings.http.port} "
                          f"(http.port): {exc.strerror}") from None
    listening = [f"http://{settings.http.host}:{settings.http.port}", *addresses]
    mode = ("distributed (RQ on Redis)" if not settings.embedded
            else "embedded (jobs in a work process)" if work is not None
            else "embedded (in-process jobs)")
    for line in [f"{mode}, database {shown_url(settings.database.url)}", *_folders(settings)]:
        print(f"hub: {line}", flush=True)
    tune_after_start()
    for address in listening:
        print(f"hub: listening on {address}", flush=True)
    if ready is not None:
        ready(listening)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        print("hub: stopping", flush=True)
        await runner.cleanup()
        await hub.stop()


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    configure_logging(settings)
    asyncio.run(_serve(settings))
    return 0


# -- worker -----------------------------------------------------------------------------------

def cmd_worker(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not settings.redis.url:
        raise ConfigError(["redis.url: `hub worker` needs a Redis URL (embedded mode runs "
                           "jobs inside `hub serve`)"])
    configure_logging(settings)
    from redis import Redis
    from rq import SimpleWorker

    from hub.app import Hub, set_worker_hub
    from hub.jobs import RQJobs
    from hub.rules_runtime import load_rules

    hub = Hub(settings, adapters=None)
    set_worker_hub(hub)
    hub.rules = hub.run_sync(load_rules(settings.routing))
    if hub.rules is not None:
        hub.set_router(hub.rules)
    jobs = hub.jobs
    assert isinstance(jobs, RQJobs)
    # SimpleWorker runs jobs in this process: no fork per job, which caps RQ's default
    # worker at a few dozen jobs per second. Its jobs hand their ids to the hub's loop thread
    # (hub.workers.delivery), where the sends go on while the next job is fetched.
    connection = Redis.from_url(settings.redis.url)
    worker = SimpleWorker([jobs.queue], connection=connection)
    tune_after_start()
    print(f"hub worker: consuming {jobs.queue.name}", flush=True)
    try:
        worker.work(burst=args.burst, logging_level=settings.hub.log_level)
    finally:
        # Sends under way finish and are recorded; relay sessions are closed.
        hub.run_sync(hub.stop())
    return 0


# -- db, staff, token -------------------------------------------------------------------------

def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from hub.storage.db import upgrade_sync

    settings = _settings(args)
    upgrade_sync(settings.database.url)
    print("hub: database is at the newest schema")
    return 0


def _run_with_hub(args: argparse.Namespace,
                  body: Callable[[Any], Coroutine[Any, Any, int]]) -> int:
    from hub.app import Hub

    settings = _settings(args)

    async def run() -> int:
        hub = Hub(settings, adapters=[])
        try:
            await hub.prepare()
            return await body(hub)
        finally:
            await hub.stop()

    return asyncio.run(run())


def cmd_staff_add(args: argparse.Namespace) -> int:
    from hub.staff import StaffError, add_staff

    password = None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
        if not password:
            raise CommandError("no password on standard input")
    elif sys.stdin.isatty() and not args.no_password:
        password = getpass.getpass("Password (empty: API token only): ") or None
    queues = [q.strip() for q in (args.queues or "").split(",") if q.strip()]

    async def body(hub: Any) -> int:
        try:
            async with hub.db.transaction() as session:
                staff = await add_staff(session, args.email, name=args.name, role=args.role,
                                        queues=queues, password=password)
        except StaffError as exc:
            raise CommandError(str(exc)) from None
        print(f"hub: added {staff.role} {staff.email}")
        return 0

    return _run_with_hub(args, body)


def _new_password(from_stdin: bool) -> str:
    """A password from standard input's first line, or asked twice at the terminal; never argv."""
    if from_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("New password: ")
        if getpass.getpass("Again: ") != password:
            raise CommandError("the two passwords differ")
    if len(password) < 8:
        raise CommandError("a password needs at least 8 characters")
    return password


def cmd_staff_password(args: argparse.Namespace) -> int:
    from hub import audit
    from hub.auth import set_password
    from hub.staff import find_staff

    password = _new_password(args.password_stdin)

    async def body(hub: Any) -> int:
        async with hub.db.transaction() as session:
            staff = await find_staff(session, args.email)
            if staff is None:
                raise CommandError(f"no staff member {args.email}")
            await set_password(session, staff, password)
            audit.record(session, "cli", "staff.password", "staff", staff.id)
        print(f"hub: password set for {staff.email}; their web sessions have ended")
        return 0

    return _run_with_hub(args, body)


def cmd_token_create(args: argparse.Namespace) -> int:
    from hub import audit
    from hub.auth import create_token
    from hub.staff import find_staff

    async def body(hub: Any) -> int:
        async with hub.db.transaction() as session:
            staff = await find_staff(session, args.email)
            if staff is None or not staff.active:
                raise CommandError(f"no active staff member {args.email}")
            token = await create_token(session, staff)
            audit.record(session, "cli", "token.create", "staff", staff.id)
        print(f"API token for {staff.email} (shown once):", file=sys.stderr)
        print(token)
        return 0

    return _run_with_hub(args, body)


def cmd_apikey_create(args: argparse.Namespace) -> int:
    from hub import audit
    from hub.apikeys import KeyExists, create_key

    async def body(settings: Settings, db: Any) -> int:
        try:
            async with db.transaction() as session:
                key = await create_key(session, args.name)
                audit.record(session, "cli", "apikey.create", "open311_key", args.name)
        except KeyExists as exc:
            raise CommandError(str(exc)) from None
        print(f"Open311 API key for {args.name} (shown once):", file=sys.stderr)
        print(key)
        return 0

    return _run_with_db(args, body)


def cmd_apikey_revoke(args: argparse.Namespace) -> int:
    from hub import audit
    from hub.apikeys import NoSuchKey, revoke_key

    async def body(settings: Settings, db: Any) -> int:
        try:
            async with db.transaction() as session:
                await revoke_key(session, args.name)
                audit.record(session, "cli", "apikey.revoke", "open311_key", args.name)
        except NoSuchKey as exc:
            raise CommandError(str(exc)) from None
        print(f"Open311 API key for {args.name} revoked")
        return 0

    return _run_with_db(args, body)


# -- spool, outbox: what was set aside --------------------------------------------------------

def _run_with_db(args: argparse.Namespace,
                 body: Callable[[Settings, Any], Coroutine[Any, Any, int]]) -> int:
    """Like _run_with_hub without rules, queues and adapters: these commands need only rows."""
    from sqlalchemy.exc import SQLAlchemyError

    from hub.setaside import SetAsideError
    from hub.storage.db import Database, upgrade

    settings = _settings(args)

    async def run() -> int:
        db = Database(settings.database.url, pool_size=2)
        try:
            if settings.database.migrate_on_start:
                await upgrade(settings.database.url)
            return await body(settings, db)
        except SetAsideError as exc:
            raise CommandError(str(exc)) from None
        except (SQLAlchemyError, OSError) as exc:
            first = (str(exc).splitlines() or [""])[0][:200]
            raise CommandError(f"database error: {type(exc).__name__}: {first}") from None
        finally:
            await db.dispose()

    return asyncio.run(run())


def _when(value: Any) -> str:
    return "-" if value is None else str(value.strftime("%Y-%m-%d %H:%M:%SZ"))


def _line(text: object, width: int = 100) -> str:
    """One terminal-safe line: stored errors and keys come from outside and may hold escapes."""
    from hub.setaside import safe_text

    line = safe_text(str(text), multiline=False)
    return line if len(line) <= width else line[:width - 3] + "..."


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    """One aligned line per item; the last column (the error) is left ragged."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        print("  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]]))


def _print_json(value: Any) -> None:
    from hub.setaside import to_jsonable

    # ensure_ascii (the default) turns control and bidi characters into \u escapes.
    print(json.dumps(to_jsonable(value), indent=2))


def _none_found(what: str, state: str) -> None:
    print(f"hub: no {'' if state == 'all' else state + ' '}{what} items", file=sys.stderr)


def cmd_spool_list(args: argparse.Namespace) -> int:
    from hub.setaside import list_spool

    async def body(settings: Settings, db: Any) -> int:
        items = await list_spool(db, state=args.state, limit=args.limit)
        if args.json:
            _print_json(items)
        elif not items:
            _none_found("spool", args.state)
        else:
            _print_table(["ID", "CHANNEL", "STATE", "TRIES", "RECEIVED", "BYTES", "LAST ERROR"],
                         [[str(i.id), _line(i.channel), i.state, str(i.attempts),
                           _when(i.received_at), "-" if i.size is None else str(i.size),
                           _line(i.last_error or "-")] for i in items])
        return 0

    return _run_with_db(args, body)


def cmd_spool_show(args: argparse.Namespace) -> int:
    from hub.setaside import show_spool

    async def body(settings: Settings, db: Any) -> int:
        item = await show_spool(db, args.id)
        if args.json:
            _print_json(item)
            return 0
        size = "-" if item.size is None else f"{item.size} bytes"
        for name, value in [("id", item.id), ("channel", item.channel), ("state", item.state),
                            ("attempts", item.attempts), ("last error", item.last_error or "-"),
                            ("received", _when(item.received_at)),
                            ("processed", _when(item.processed_at)),
                            ("next attempt", _when(item.next_attempt_at)),
                            ("message", item.message_id or "-"), ("dedupe key", item.dedupe_key),
                            ("envelope", json.dumps(item.envelope, sort_keys=True)),
                            ("payload", size)]:
            print(f"{name + ':':<14}{_line(value, width=2000)}")
        if item.size:
            print(f"\n-- first {item.preview_bytes} of {item.size} bytes --\n{item.preview}")
        return 0

    return _run_with_db(args, body)


def _print_retried(retried: list[Any]) -> None:
    for item in retried:
        print(f"{item.kind} item {item.id}: pending again "
              f"(was {item.previous_attempts} tries: {_line(item.previous_error or '-')})")


def cmd_spool_retry(args: argparse.Namespace) -> int:
    from hub.setaside import retry_all_spool, retry_spool

    async def body(settings: Settings, db: Any) -> int:
        if not args.all:
            _print_retried([await retry_spool(db, args.id)])
            return 0
        retried = await retry_all_spool(db)
        _print_retried(retried)
        print(f"hub: {len(retried)} failed spool item(s) set back to pending", file=sys.stderr)
        return 0

    return _run_with_db(args, body)


def cmd_outbox_list(args: argparse.Namespace) -> int:
    from hub.setaside import list_outbox

    async def body(settings: Settings, db: Any) -> int:
        items = await list_outbox(db, state=args.state, limit=args.limit)
        if args.json:
            _print_json(items)
        elif not items:
            _none_found("outbox", args.state)
        else:
            _print_table(["ID", "MESSAGE", "REFERENCE", "CHANNEL", "STATE", "TRIES", "UPDATED",
                          "LAST ERROR"],
                         [[str(i.id), str(i.message_id), i.conversation_reference or "-",
                           _line(i.channel), i.state, str(i.attempts), _when(i.updated_at),
                           _line(i.last_error or "-")] for i in items])
        return 0

    return _run_with_db(args, body)


def cmd_outbox_retry(args: argparse.Namespace) -> int:
    from hub.jobs import Jobs, RQJobs
    from hub.setaside import retry_outbox

    async def body(settings: Settings, db: Any) -> int:
        # With Redis, a `hub worker` can send it right away; in embedded mode this process has
        # no adapters, so the running hub's outbox sweeper hands it to its own job runner.
        jobs: Jobs | None = None
        if settings.redis.url:
            jobs = RQJobs(settings.redis.url, settings.redis.queue_prefix)
        try:
            item = await retry_outbox(db, args.id, jobs=jobs)
        finally:
            if isinstance(jobs, RQJobs):
                jobs.close()
        _print_retried([item])
        how = "enqueued for delivery" if item.enqueued else "the running hub's sweeper sends it"
        print(f"hub: {how}", file=sys.stderr)
        return 0

    return _run_with_db(args, body)


# -- parser -----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    # `hub --config F serve` and `hub serve --config F` alike: the subcommands' option must not
    # put back a default over the value given before the command.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                        help="TOML config file (or HUB_CONFIG)")
    parser = argparse.ArgumentParser(prog="hub", description="Omnichannel intake and routing hub")
    parser.add_argument("--config", metavar="PATH", default=None,
                        help="TOML config file (or HUB_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("serve", parents=[common], help="run HTTP, SMTP and (embedded) jobs"
                   ).set_defaults(func=cmd_serve)
    worker = sub.add_parser("worker", parents=[common], help="run an RQ worker")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    worker.set_defaults(func=cmd_worker)

    db = sub.add_parser("db", help="database").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", parents=[common], help="apply migrations"
                  ).set_defaults(func=cmd_db_upgrade)

    staff = sub.add_parser("staff", help="staff accounts").add_subparsers(dest="staff_command",
                                                                          required=True)
    add = staff.add_parser("add", parents=[common], help="add a staff member")
    add.add_argument("email")
    add.add_argument("--name", required=True)
    add.add_argument("--role", required=True, choices=["agent", "supervisor", "admin"])
    add.add_argument("--queues", default="", help="comma-separated queue names")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.add_argument("--no-password", action="store_true", help="API tokens only")
    add.set_defaults(func=cmd_staff_add)
    password = staff.add_parser("password", parents=[common],
                                help="set a staff member's password (ends their web sessions)")
    password.add_argument("email")
    password.add_argument("--password-stdin", action="store_true",
                          help="read the password from stdin (else asked at the terminal)")
    password.set_defaults(func=cmd_staff_password)

    token = sub.add_parser("token", help="API tokens").add_subparsers(dest="token_command",
                                                                      required=True)
    create = token.add_parser("create", parents=[common], help="print a new API token")
    create.add_argument("email")
    create.set_defaults(func=cmd_token_create)

    apikey = sub.add_parser("apikey", help="Open311 API keys").add_subparsers(
        dest="apikey_command", required=True)
    key_create = apikey.add_parser("create", parents=[common], help="print a new Open311 API key")
    key_create.add_argument("name", help="the client it is for, e.g. city-app")
    key_create.set_defaults(func=cmd_apikey_create)
    key_revoke = apikey.add_parser("revoke", parents=[common],
                                   help="end an Open311 API key at once")
    key_revoke.add_argument("name")
    key_revoke.set_defaults(func=cmd_apikey_revoke)

    spool = sub.add_parser("spool", help="inbound items set aside (failed)").add_subparsers(
        dest="spool_command", required=True)
    spool_list = spool.add_parser("list", parents=[common], help="list spool items, newest first")
    spool_list.add_argument("--state", default="failed",
                            choices=["failed", "pending", "done", "all"])
    spool_list.add_argument("--limit", type=int, default=50, metavar="N")
    spool_list.add_argument("--json", action="store_true", help="machine-readable output")
    spool_list.set_defaults(func=cmd_spool_list)
    show = spool.add_parser("show", parents=[common], help="one item, with its payload's start")
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=cmd_spool_show)
    spool_retry = spool.add_parser("retry", parents=[common], help="work failed items again")
    which = spool_retry.add_mutually_exclusive_group(required=True)
    which.add_argument("id", type=int, nargs="?")
    which.add_argument("--all", action="store_true", help="every failed item")
    spool_retry.set_defaults(func=cmd_spool_retry)

    outbox = sub.add_parser("outbox", help="outbound items set aside (dead)").add_subparsers(
        dest="outbox_command", required=True)
    outbox_list = outbox.add_parser("list", parents=[common], help="list outbox items")
    outbox_list.add_argument("--state", default="dead",
                             choices=["dead", "pending", "sending", "sent", "all"])
    outbox_list.add_argument("--limit", type=int, default=50, metavar="N")
    outbox_list.add_argument("--json", action="store_true", help="machine-readable output")
    outbox_list.set_defaults(func=cmd_outbox_list)
    outbox_retry = outbox.add_parser("retry", parents=[common], help="send a dead item again")
    outbox_retry.add_argument("id", type=int)
    outbox_retry.set_defaults(func=cmd_outbox_retry)

    from hub.routing.cli import register

    register(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"hub: config error: {problem}", file=sys.stderr)
        return ConfigError.exit_code
    except CommandError as exc:
        print(f"hub: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
