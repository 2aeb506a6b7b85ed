"""Explain and replay on real stored traffic: messages taken in through the intake (test adapter)
while everything went to the default queue, then replayed with the example rule folder, and a
corpus email explained, all through the `hub` command as an admin runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hub.app import Hub
from tests.support.adapter import inbound
from tests.support.corpus import CORPUS

ROOT = Path(__file__).resolve().parents[2]


def hub_cmd(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "hub.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


async def test_replay_shows_where_stored_traffic_would_move(hub: Hub, db_url: str) -> None:
    texts = ["There is a huge pothole on Main St", "Pothole near the school again",
             "The recycling was not picked up, missed collection again", "Thanks for your help"]
    for i, text in enumerate(texts):
        await hub.intake.accept(inbound(sender=f"+1555000{i:04d}", text=text))
    done = hub_cmd("rules", "replay", "--since", "2000-01-01", "--rules", "routing_rules",
                   env_extra={"HUB_DATABASE_URL": db_url})
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "replayed 4 conversations" in out
    assert "general -> roads: 2" in out
    assert "general -> waste: 1" in out
    assert "unchanged: 1" in out


def test_explain_a_corpus_email_with_its_trace() -> None:
    eml = CORPUS / "mailgun-talon" / "standard_replies" / "iphone.eml"
    done = hub_cmd("rules", "explain", str(eml), "--json")
    assert done.returncode == 0, done.stderr
    decision = json.loads(done.stdout)

    considered = [step["rule"] for step in decision["trace"] if "rule" in step]
    assert decision["queue"] == "general" and "default" in considered
