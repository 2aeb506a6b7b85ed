"""Peer benchmark: django-helpdesk's `get_email` on the same citizen mails (bench/mails.py).

django-helpdesk (2.6.1, the reference release) is installed with pip into a throwaway venv,
cached under ~/.cache/civic-hub-bench/helpdesk-<version> (built anew with --fresh; nothing goes
into the hub's own venv). Each round gets a fresh copy of a freshly migrated SQLite database in
WAL mode, one Queue whose mailbox is the "local" type (a flat directory, one file per mail), and
times `python manage.py get_email` as a subprocess (Django start-up included, as under cron)
until every mail is in the database: each taken-in mail is one FollowUp, either on a new Ticket
or, for a reply whose parent was already taken in, on the parent's ticket. Acknowledgments to
submitters are built and "sent" through Django's in-memory mail backend.

    python bench/peers.py [-n 1000] [-r 3] [--fresh] [--version 2.6.1]

`run_helpdesk(mails, rounds)` returns the mails/s of each round, for benches that run the hub
and its peer interleaved in the same run (bench/ingest.py). Figures only; nothing asserts on
timings.
"""

from __future__ import annotations

import argparse
import atexit
import fcntl
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mails import HELPDESK_ADDRESS, make_mails, write_maildir

HELPDESK_VERSION = "2.6.1"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "civic-hub-bench"
MAX_PASSES = 5  # get_email runs over the directory again while mails are left and it progresses

SETTINGS = '''\
import os
from pathlib import Path

ROUND = Path(os.environ["HDBENCH_DIR"])
SECRET_KEY = "civic-hub-bench-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.sites",
    "django.contrib.messages",
    "django.contrib.humanize",
    "rest_framework",
    "helpdesk",
]
SITE_ID = 1
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(ROUND / "db.sqlite3")}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
MEDIA_ROOT = str(ROUND / "media")
MEDIA_URL = "/media/"
STATIC_URL = "/static/"
ROOT_URLCONF = "hdbench_urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
DEFAULT_FROM_EMAIL = "{address}"
HELPDESK_TEAMS_MODE_ENABLED = False
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django.helpdesk": {"handlers": ["stderr"], "level": "WARNING"}},
}
'''.replace("{address}", HELPDESK_ADDRESS)

URLS = '''\
from django.urls import include, path

urlpatterns = [path("helpdesk/", include("helpdesk.urls", namespace="helpdesk"))]
'''

MANAGE = '''\
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hdbench_settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
'''

# Run in the helpdesk venv, outside the timing: the queue the mails go to.
SETUP_QUEUE = '''\
import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hdbench_settings")
django.setup()
from helpdesk.models import Queue

Queue.objects.create(
    title="City services", slug="city", email_address="{address}",
    allow_email_submission=True, email_box_type="local", email_box_local_dir=sys.argv[1],
    email_box_interval=0, logging_type="warn",
)
'''.replace("{address}", HELPDESK_ADDRESS)


@dataclass(frozen=True)
class HelpdeskEnv:
    python: Path
    version: str    # installed
    requested: str

    @property
    def note(self) -> str:
        if self.version == self.requested:
            return f"django-helpdesk {self.version}"
        return (f"django-helpdesk {self.version} (NOT the requested {self.requested}, "
                f"which pip could not install here; nearest available)")


@dataclass(frozen=True)
class RoundResult:
    rate: float         # mails/s
    seconds: float
    cpu_seconds: float  # get_email's own CPU time (user + system)
    passes: int         # get_email runs it took
    tickets: int
    followups: int
    left: int           # files still in the mailbox directory
    journal_mode: str


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def _available_versions(python: Path, log: Path) -> list[str]:
    out = subprocess.run([str(python), "-m", "pip", "index", "versions", "django-helpdesk"],
                         capture_output=True, text=True, check=False)
    with log.open("a") as handle:
        handle.write(out.stdout + out.stderr)
    match = re.search(r"Available versions:\s*(.+)", out.stdout)
    if not match:
        return []
    return [v.strip() for v in match.group(1).split(",")
            if re.fullmatch(r"\d+(\.\d+)*", v.strip())]


def nearest_version(wanted: str, available: list[str]) -> str | None:
    """The highest available release at or below `wanted`, else the lowest above it."""
    key = _version_key(wanted)
    below = [v for v in available if _version_key(v) <= key]
    if below:
        return max(below, key=_version_key)
    return min(available, key=_version_key) if available else None


def _pip_install(python: Path, version: str, log: Path) -> bool:
    with log.open("a") as handle:
        handle.write(f"\n$ pip install django-helpdesk=={version}\n")
        handle.flush()
        done = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check",
                               f"django-helpdesk=={version}"],
                              stdout=handle, stderr=subprocess.STDOUT, check=False)
    return done.returncode == 0


def ensure_helpdesk(version: str = HELPDESK_VERSION, fresh: bool = False) -> HelpdeskEnv:
    """The cached venv with django-helpdesk, built (python -m venv + pip) if missing or `fresh`."""
    venv = CACHE / f"helpdesk-{version}"
    marker = venv / "civic-hub-bench.json"
    python = venv / "bin" / "python"
    with _locked(CACHE / f"helpdesk-{version}.lock"):
        if marker.exists() and python.exists() and not fresh:
            info = json.loads(marker.read_text())
            return HelpdeskEnv(python, info["installed"], info["requested"])
        shutil.rmtree(venv, ignore_errors=True)
        log = CACHE / f"helpdesk-{version}.pip.log"
        log.write_text("")
        print(f"peers: building a venv with django-helpdesk {version} in {venv} "
              f"(pip log: {log})", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        if not _pip_install(python, version, log):
            fallback = nearest_version(version, _available_versions(python, log))
            if fallback is None or not _pip_install(python, fallback, log):
                tail = "\n".join(log.read_text().splitlines()[-20:])
                raise RuntimeError(f"could not install django-helpdesk {version} nor a nearby "
                                   f"release; see {log}:\n{tail}")
        probe = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; "
             "print(m.version('django-helpdesk'), m.version('django'))"],
            capture_output=True, text=True, check=True)
        helpdesk, django = probe.stdout.split()
        marker.write_text(json.dumps({"requested": version, "installed": helpdesk,
                                      "django": django, "python": sys.version.split()[0]}))
        return HelpdeskEnv(python, helpdesk, version)


def _counts(db: Path) -> tuple[int, int, str]:
    with sqlite3.connect(db) as conn:
        tickets = conn.execute("SELECT count(*) FROM helpdesk_ticket").fetchone()[0]
        followups = conn.execute("SELECT count(*) FROM helpdesk_followup").fetchone()[0]
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    conn.close()
    return tickets, followups, mode


def _run(env: HelpdeskEnv, project: Path, round_dir: Path, *args: str, log: Path) -> float:
    """Run the venv's python with `args` in the project, output appended to `log`; returns the
    child's CPU seconds (user + system), which the machine's load does not inflate."""
    environ = {**os.environ, "HDBENCH_DIR": str(round_dir), "PYTHONPATH": str(project),
               "DJANGO_SETTINGS_MODULE": "hdbench_settings"}
    environ.pop("PYTHONHOME", None)
    with log.open("a") as handle:
        handle.write(f"$ python {' '.join(args)}\n")
        handle.flush()
        child = subprocess.Popen([str(env.python), *args], cwd=project, env=environ,
                                 stdout=handle, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"{' '.join(args)} exited {child.returncode}; {log}:\n{tail}")
    return usage.ru_utime + usage.ru_stime


class HelpdeskBench:
    """A Django project around django-helpdesk in a temp dir; `round(mails)` times one round."""

    def __init__(self, env: HelpdeskEnv, workdir: Path, keep: bool = False) -> None:
        self.env = env
        self.keep = keep
        self.project = workdir / "project"
        self.project.mkdir(parents=True)
        (self.project / "hdbench_settings.py").write_text(SETTINGS)
        (self.project / "hdbench_urls.py").write_text(URLS)
        (self.project / "manage.py").write_text(MANAGE)
        (self.project / "setup_queue.py").write_text(SETUP_QUEUE)
        self.template = workdir / "template"
        self.template.mkdir()
        self.log = workdir / "setup.log"
        _run(env, self.project, self.template, "manage.py", "migrate", "--noinput", "-v", "0",
             log=self.log)
        with sqlite3.connect(self.template / "db.sqlite3") as conn:
            # WAL is a property of the database file: every later connection (the copies
            # included) uses it.
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        conn.close()
        if mode != "wal":
            raise RuntimeError(f"SQLite refused WAL mode ({mode})")
        self.workdir = workdir
        self.rounds = 0
        # What one get_email costs with no mail: Django start-up and the queue scan.
        idle = workdir / "idle"
        idle.mkdir()
        shutil.copyfile(self.template / "db.sqlite3", idle / "db.sqlite3")
        started = time.perf_counter()
        _run(env, self.project, idle, "manage.py", "get_email", log=self.log)
        self.idle_seconds = time.perf_counter() - started

    def round(self, mails: list[bytes]) -> RoundResult:
        self.rounds += 1
        round_dir = self.workdir / f"round-{self.rounds}"
        mailbox = round_dir / "mailbox"
        round_dir.mkdir()
        shutil.copyfile(self.template / "db.sqlite3", round_dir / "db.sqlite3")
        write_maildir(mails, mailbox)
        _run(self.env, self.project, round_dir, "setup_queue.py", str(mailbox), log=self.log)
        log = round_dir / "get_email.log"
        passes = 0
        left = len(mails)
        cpu = 0.0
        started = time.perf_counter()
        while left and passes < MAX_PASSES:
            passes += 1
            cpu += _run(self.env, self.project, round_dir, "manage.py", "get_email", log=log)
            before, left = left, sum(1 for p in mailbox.iterdir() if p.is_file())
            if left >= before:
                break
        seconds = time.perf_counter() - started
        tickets, followups, mode = _counts(round_dir / "db.sqlite3")
        if followups < len(mails) or left:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise RuntimeError(
                f"django-helpdesk took in {followups} of {len(mails)} mails "
                f"({left} files left in {mailbox} after {passes} get_email runs); log:\n{tail}")
        if not self.keep:
            shutil.rmtree(round_dir, ignore_errors=True)
        return RoundResult(len(mails) / seconds, seconds, cpu, passes, tickets, followups, left,
                           mode)

    def close(self) -> None:
        if self.keep:
            print(f"peers: kept {self.workdir}", file=sys.stderr)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


def open_bench(version: str = HELPDESK_VERSION, fresh: bool = False,
               keep: bool = False) -> HelpdeskBench:
    """A migrated django-helpdesk project in a new temp dir; close() removes it."""
    env = ensure_helpdesk(version, fresh)
    workdir = Path(tempfile.mkdtemp(prefix="hdbench-"))
    try:
        return HelpdeskBench(env, workdir, keep)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise


_shared: dict[str, HelpdeskBench] = {}
_shared_lock = threading.Lock()


def run_helpdesk(mails: list[bytes], rounds: int) -> list[float]:
    """mails/s of django-helpdesk's `get_email` on `mails`, one figure per round (fresh DB).

    The venv and the migrated project are made on the first call and reused by later ones (the
    project is removed at exit), so that a bench interleaving rounds pays for them once.
    """
    with _shared_lock:
        bench = _shared.get(HELPDESK_VERSION)
        if bench is None:
            bench = _shared[HELPDESK_VERSION] = open_bench()
            atexit.register(bench.close)
            if bench.env.version != bench.env.requested:
                print(f"peers: {bench.env.note}", file=sys.stderr)
        return [bench.round(mails).rate for _ in range(rounds)]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=1000, help="mails (default 1000)")
    parser.add_argument("-r", "--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--seed", type=int, default=1, help="seed of bench/mails.py")
    parser.add_argument("--version", default=HELPDESK_VERSION, help="django-helpdesk release")
    parser.add_argument("--fresh", action="store_true", help="rebuild the cached venv")
    parser.add_argument("--keep", action="store_true",
                        help="keep the Django project, databases and get_email logs")
    args = parser.parse_args()

    mails = make_mails(args.count, args.seed)
    replies = sum(b"\r\nIn-Reply-To: " in m for m in mails)
    bench = open_bench(args.version, args.fresh, args.keep)
    print(f"{bench.env.note} get_email, SQLite WAL, {len(mails)} mails ({replies} replies to "
          f"earlier mails), {args.rounds} round(s); python {sys.version.split()[0]}; "
          f"load average {_load()}", flush=True)
    print(f"  get_email with nothing to do (Django start-up): {bench.idle_seconds:.2f} s",
          flush=True)
    results = []
    try:
        for i in range(1, args.rounds + 1):
            r = bench.round(mails)
            results.append(r)
            print(f"  round {i}: {r.rate:7.1f} mails/s  ({r.seconds:.2f} s, {r.passes} get_email "
                  f"run(s) using {r.cpu_seconds:.2f} CPU-s: {len(mails) / r.cpu_seconds:.1f} "
                  f"mails per CPU-second; {r.tickets} tickets, {r.followups} followups, so "
                  f"{len(mails) - r.tickets} mails threaded onto a ticket; journal "
                  f"{r.journal_mode})", flush=True)
    finally:
        bench.close()
    print(f"  median: {median(r.rate for r in results):.1f} mails/s; load average {_load()}")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
