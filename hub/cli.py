"""The `hub` command: serve, worker, db, staff, token, rules.

Every command takes `--config PATH` (or HUB_CONFIG). Problems are one-line messages on stderr
with a non-zero exit: 2 for configuration and usage, 1 for everything else. No stack traces.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from hub.config import ConfigError, Settings, load_settings

log = logging.getLogger("hub")


class CommandError(Exception):
    exit_code = 1


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


def _logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.hub.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


# -- serve ------------------------------------------------------------------------------------

async def _serve(settings: Settings, ready: Callable[[list[str]], None] | None = None) -> None:
    from aiohttp import web

    from hub.app import Hub
    from hub.web.app import create_app

    hub = Hub(settings)
    addresses = await hub.start()
    runner = web.AppRunner(create_app(hub), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.http.host, settings.http.port)
    try:
        await site.start()
    except OSError as exc:
        await hub.stop()
        raise CommandError(f"cannot listen on {settings.http.host}:{settings.http.port}: "
                           f"{exc.strerror}") from None
    listening = [f"http://{settings.http.host}:{settings.http.port}", *addresses]
    mode = "embedded (in-process jobs)" if settings.embedded else "distributed (RQ on Redis)"
    print(f"hub: {mode}, database {settings.database.url.split(':', 1)[0]}", flush=True)
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
    _logging(settings)
    asyncio.run(_serve(settings))
    return 0


# -- worker -----------------------------------------------------------------------------------

def cmd_worker(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not settings.redis.url:
        raise ConfigError(["redis.url: `hub worker` needs a Redis URL (embedded mode runs "
                           "jobs inside `hub serve`)"])
    _logging(settings)
    from redis import Redis
    from rq import SimpleWorker

    from hub.app import Hub, set_worker_hub
    from hub.jobs import RQJobs
    from hub.rules_runtime import load_rules

    hub = Hub(settings, adapters=None)
    set_worker_hub(hub)
    hub.run_sync(load_rules(hub))
    jobs = hub.jobs
    assert isinstance(jobs, RQJobs)
    # SimpleWorker runs jobs in this process: no fork per job, which caps RQ's default
    # worker at a few dozen jobs per second.
    connection = Redis.from_url(settings.redis.url)
    worker = SimpleWorker([jobs.queue], connection=connection)
    print(f"hub worker: consuming {jobs.queue.name}", flush=True)
    worker.work(burst=args.burst, logging_level=settings.hub.log_level)
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


# -- parser -----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", help="TOML config file (or HUB_CONFIG)")
    parser = argparse.ArgumentParser(prog="hub", parents=[common],
                                     description="Omnichannel intake and routing hub")
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

    token = sub.add_parser("token", help="API tokens").add_subparsers(dest="token_command",
                                                                      required=True)
    create = token.add_parser("create", parents=[common], help="print a new API token")
    create.add_argument("email")
    create.set_defaults(func=cmd_token_create)

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
