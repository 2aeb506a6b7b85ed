"""`hub spool ...` and `hub outbox ...` as an operator runs them: real processes with a config
file, against SQLite and PostgreSQL, on rows a hub set aside."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hub.app import Hub
from hub.storage.tables import OutboxItem, SpoolEntry
from hub.workers.maintenance import sweep_outbox
from tests.support.adapter import RecordingAdapter
from tests.unit.test_setaside import add_spool, audit_rows, dead_outbox, row

# The commands as separate processes: one backend by default (--full runs both).
pytestmark = pytest.mark.slow_e2e

HUB = [sys.executable, "-m", "hub.cli"]
RAW = b"From: a@b.example\r\nSubject: \x1b[2Jhi\r\n\r\nbody"


@pytest.fixture
def settings_data(settings_data: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    settings_data["outbox"]["max_attempts"] = 1  # one failed try: dead letter
    return settings_data


@pytest.fixture
def config(tmp_path: Path, db_url: str) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(f'[hub]\ndata_dir = "{tmp_path / "cli-data"}"\nsecret_key = "test-secret"\n'
                    f'[database]\nurl = "{db_url}"\nmigrate_on_start = false\n')
    return path


def hub_cli(config: Path, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    done = subprocess.run([*HUB, *args, "--config", str(config)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == code, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return done


async def test_spool_list_show_and_retry(hub: Hub, config: Path) -> None:
    hostile = "ParseError: \x1b]0;pwned\x07 at \u202eline 3"
    first = await add_spool(hub.db, "first", error=hostile, payload=RAW)
    await add_spool(hub.db, "waiting", state="pending")
    second = await add_spool(hub.db, "second")

    listed = hub_cli(config, "spool", "list").stdout
    header, *lines = listed.splitlines()
    assert header.split() == ["ID", "CHANNEL", "STATE", "TRIES", "RECEIVED", "BYTES", "LAST",
                              "ERROR"]
    assert [line.split()[:4] for line in lines] == [[str(second), "sms", "failed", "5"],
                                                     [str(first), "sms", "failed", "5"]]
    assert len({line.index("failed") for line in lines} | {header.index("STATE")}) == 1
    assert "\\x1b]0;pwned\\x07 at \\u202eline 3" in lines[1]
    assert not any(ch in listed for ch in "\x1b\x07\u202e")
    every = json.loads(hub_cli(config, "spool", "list", "--state", "all", "--json").stdout)
    assert [i["state"] for i in every] == ["failed", "pending", "failed"]
    assert every[2]["last_error"] == hostile and every[2]["size"] == len(RAW)
    assert len(json.loads(hub_cli(config, "spool", "list", "--limit", "1", "--json").stdout)) == 1

    shown = hub_cli(config, "spool", "show", str(first)).stdout
    assert "state:        failed" in shown and "dedupe key:   key|first" in shown
    assert (f"-- first {len(RAW)} of {len(RAW)} bytes --\n"
            "From: a@b.example\nSubject: \\x1b[2Jhi\n\nbody") in shown
    assert not any(ch in shown for ch in "\x1b\x07\u202e\r")
    detail = json.loads(hub_cli(config, "spool", "show", str(first), "--json").stdout)
    assert detail["envelope"] == {"via": "test"} and detail["preview_bytes"] == len(RAW)
    assert "no spool item 999" in hub_cli(config, "spool", "show", "999", code=1).stderr

    retried = hub_cli(config, "spool", "retry", str(first)).stdout
    assert retried.startswith(f"spool item {first}: pending again (was 5 tries: ParseError:")
    assert (await row(hub.db, SpoolEntry, first)).state == "pending"
    again = hub_cli(config, "spool", "retry", str(first), code=1)
    assert again.stderr == f"hub: spool item {first} is pending, not failed\n"
    assert "no spool item 999" in hub_cli(config, "spool", "retry", "999", code=1).stderr
    hub_cli(config, "spool", "retry", code=2)  # an id or --all
    hub_cli(config, "spool", "retry", "1", "--all", code=2)

    everything = hub_cli(config, "spool", "retry", "--all")
    assert everything.stdout.startswith(f"spool item {second}: pending again")
    assert "1 failed spool item(s) set back to pending" in everything.stderr
    empty = hub_cli(config, "spool", "list")
    assert (empty.stdout, empty.stderr) == ("", "hub: no failed spool items\n")
    assert [(a.actor, a.target_id, a.detail["bulk"]) for a in await audit_rows(hub.db)] == [
        ("cli", str(first), False), ("cli", str(second), True)]


async def test_outbox_list_and_retry_then_the_hub_sends_it_once(
        hub: Hub, adapter: RecordingAdapter, config: Path) -> None:
    message_id, outbox_id = await dead_outbox(hub, adapter)
    header, line = hub_cli(config, "outbox", "list").stdout.splitlines()
    assert header.split()[:7] == ["ID", "MESSAGE", "REFERENCE", "CHANNEL", "STATE", "TRIES",
                                  "UPDATED"]
    assert line.split()[0:2] == [str(outbox_id), str(message_id)]
    assert line.split()[3:6] == ["sms", "dead", "1"] and "TransientError" in line
    (item,) = json.loads(hub_cli(config, "outbox", "list", "--json").stdout)
    assert (item["id"], item["state"], item["message_id"]) == (outbox_id, "dead", message_id)
    assert hub_cli(config, "outbox", "list", "--state", "pending").stderr == (
        "hub: no pending outbox items\n")

    done = hub_cli(config, "outbox", "retry", str(outbox_id))
    assert done.stdout.startswith(f"outbox item {outbox_id}: pending again (was 1 tries:")
    assert "sweeper sends it" in done.stderr  # embedded: no Redis to enqueue on
    for _ in range(2):  # the running hub's maintenance loop
        await sweep_outbox(hub)
        await hub.jobs.drain()
    assert len(adapter.sent) == 1
    assert (await row(hub.db, OutboxItem, outbox_id)).state == "sent"
    refused = hub_cli(config, "outbox", "retry", str(outbox_id), code=1)
    assert refused.stderr == f"hub: outbox item {outbox_id} is sent, not dead\n"
    assert "no outbox item 999" in hub_cli(config, "outbox", "retry", "999", code=1).stderr
    assert [a.action for a in await audit_rows(hub.db)] == ["outbox.retry"]
