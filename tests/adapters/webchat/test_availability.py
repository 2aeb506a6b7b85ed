"""What the widget is told about who is in: `online` (a member of the queue has the workspace
open) and `open` (the queue's calendar hours), a topic routing like its form, and `status`
frames when staff change the conversation; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from .conftest import ChatHub, chat_settings, running_chat

FORM = """title = { en = "Report a pothole" }
queue = "roads"
contact = "either"

[[field]]
id = "details"
type = "textarea"
label = { en = "What is wrong?" }
"""


def rules_folder(root: Path) -> Path:
    """`general` is closed today (a closing day), `roads` open all day, every day."""
    folder = root / "rules"
    (folder / "calendars").mkdir(parents=True)
    (folder / "forms").mkdir()
    today = datetime.now(UTC).date()
    closed = ", ".join(f'"{today + timedelta(days=d)}"' for d in (-1, 0, 1))
    every_day = "\n".join(f'{day} = ["00:00-00:00"]'
                          for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"))
    (folder / "calendars" / "shut.toml").write_text(
        f'timezone = "UTC"\nclosed = [{closed}]\n[hours]\n{every_day}\n')
    (folder / "calendars" / "always.toml").write_text(f'timezone = "UTC"\n[hours]\n{every_day}\n')
    (folder / "queues.toml").write_text(
        '[[queue]]\nname = "general"\ncalendar = "shut"\n\n'
        '[[queue]]\nname = "roads"\ncalendar = "always"\n')
    (folder / "forms" / "pothole.toml").write_text(FORM)
    (folder / "20-route.toml").write_text(
        '[[rule]]\nid = "default"\nphase = "route"\ndefault = true\nthen.queue = "general"\n')
    return folder


@pytest.fixture
async def chat(settings_data: dict[str, dict[str, object]],
               tmp_path: Path) -> AsyncIterator[ChatHub]:
    settings_data["routing"] = {"rules_dir": str(rules_folder(tmp_path)), "watch": False}
    async with running_chat(chat_settings(settings_data)) as running:
        assert running.hub.rules is not None and running.hub.rules.current is not None, \
            running.hub.rules.errors if running.hub.rules else "no rules"
        yield running


async def test_open_follows_the_queue_calendar_and_a_topic_routes_like_its_form(
        chat: ChatHub) -> None:
    visitor = await chat.visitor()
    assert visitor.welcome["open"] is False  # the default queue's closing day
    ack = await visitor.say("Big hole on Main St", profile={"topic": "pothole"})
    conversation = await chat.conversation_of(ack["conversation"]["reference"])
    assert conversation.queue == "roads" and conversation.subject == "Report a pothole"
    back = await chat.visitor(token=visitor.token)
    assert back.welcome["open"] is True  # the conversation's queue is open
    unknown = await (await chat.visitor()).say("hi", profile={"topic": "no-such-form"})
    assert (await chat.conversation_of(unknown["conversation"]["reference"])).queue == "general"


async def test_online_when_a_member_of_the_queue_has_the_workspace_open(chat: ChatHub) -> None:
    assert (await chat.visitor()).welcome["online"] is False
    workspace = await chat.client.ws_connect("/api/v1/events", headers=chat.headers)
    assert (await workspace.receive_json(timeout=10))["kind"] == "ready"
    assert (await chat.visitor()).welcome["online"] is True
    await workspace.close()


async def test_a_status_change_by_staff_reaches_the_widget(chat: ChatHub) -> None:
    visitor = await chat.visitor()
    ack = await visitor.say("Thanks, that is all")
    conversation = await chat.conversation_of(ack["conversation"]["reference"])
    changed = await chat.api("POST", f"/api/v1/conversations/{conversation.id}/status",
                             json={"status": "resolved"})
    assert changed.status == 200, await changed.text()
    status = await visitor.next("status")
    assert status["conversation"] == {"reference": conversation.reference,
                                      "status": "resolved"}
    assert status["open"] is False and status["online"] is False
