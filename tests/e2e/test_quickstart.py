"""The README's run path: `hub serve` with no config, then staff, token and the API, as a user
would do it in a fresh folder (real processes, real sockets). Runs on SQLite (no config at all)
and on PostgreSQL (HUB_DATABASE_URL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.services import free_port

HUB = [sys.executable, "-m", "hub.cli"]


@pytest.fixture
def workdir(tmp_path: Path, db_url: str) -> Iterator[tuple[Path, dict[str, str]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env["HUB_HTTP_PORT"] = str(free_port())
    env["HUB_SMTP_PORT"] = str(free_port())
    if db_url.startswith("postgresql"):
        env["HUB_DATABASE_URL"] = db_url
    yield tmp_path, env


def run(args: list[str], cwd: Path, env: dict[str, str], stdin: str = "") -> str:
    done = subprocess.run([*HUB, *args], cwd=cwd, env=env, input=stdin, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def wait_listening(process: subprocess.Popen[str]) -> list[str]:
    lines: list[str] = []
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
        if "listening on http://" in line:
            return lines
    raise AssertionError(f"hub serve did not start: {lines}")


def get(url: str, token: str | None = None) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_serve_with_no_config_then_staff_token_and_api(
        workdir: tuple[Path, dict[str, str]]) -> None:
    cwd, env = workdir
    process = subprocess.Popen([*HUB, "serve"], cwd=cwd, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        lines = wait_listening(process)
        base = f"http://127.0.0.1:{env['HUB_HTTP_PORT']}"
        assert any("embedded" in line for line in lines)
        assert get(f"{base}/healthz")[0] == 200
        run(["staff", "add", "clerk@city.example", "--name", "Pat Clerk", "--role", "agent",
             "--queues", "general", "--password-stdin"], cwd, env, stdin="correct horse\n")
        token = run(["token", "create", "clerk@city.example"], cwd, env).strip().splitlines()[-1]
        status, body = get(f"{base}/api/v1/queues", token)
        assert status == 200
        assert [q["name"] for q in body] == ["general"]  # type: ignore[index, union-attr]
        assert get(f"{base}/api/v1/queues")[0] == 401
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert process.returncode == 0
    if "HUB_DATABASE_URL" not in env:
        assert (cwd / "hub.db").exists()
