"""Queue titles per language (queues.toml `titles`): checked at their `path:line`, shipped in
Spanish for the citizens' queues, used by /transparency and the tracking page in the citizen's
language, and a queue meant for staff alone (no `titles`) never named on a tracking page."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import update

from hub.app import Hub
from hub.routing.loader import load_rules
from hub.storage.tables import Conversation
from tests.support.adapter import inbound
from tests.support.shipped_rules import SHIPPED
from tests.unit.routing.test_validation import errors_for
from tests.web.citizen.test_transparency import section, seeded

QUEUES = '[[queue]]\nname = "general"\n\n[[queue]]\nname = "roads"\ntitle = "Roads"\n{}\n'


@pytest.mark.parametrize("line", ['titles = { ES = "Calles" }', 'titles = { es = "" }',
                                  'titles = "Calles"', "titles = { es = 3 }"])
def test_bad_titles_are_errors_at_their_line(tmp_path: Path, line: str) -> None:
    rules_dir = tmp_path / "rules"
    errors = errors_for(rules_dir, {"queues.toml": QUEUES.format(line)})
    where = f"{rules_dir.as_posix()}/queues.toml:7:"
    assert any(e.startswith(where) and "titles" in e for e in errors), errors


def test_shipped_citizen_queues_have_spanish_titles_and_staff_queues_none() -> None:
    queues = load_rules(SHIPPED).queues
    for name in ("general", "roads", "waste", "permits", "noise", "spanish"):
        assert queues[name].citizen_title("es"), name
    assert queues["roads"].citizen_title("es") == "Calles y aceras"
    assert queues["roads"].citizen_title("en") == "Roads and sidewalks"
    for name in ("executive", "supervisors"):
        assert queues[name].citizen_title("es") is None, name
        assert queues[name].public_title("es") == queues[name].title


@pytest.fixture
def settings_data(settings_data: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
    settings_data["transparency"] = {"enabled": True, "min_group": 3}
    return settings_data


async def test_transparency_names_queues_in_the_citizen_language(client: TestClient,
                                                                 hub: Hub) -> None:
    await seeded(hub)
    page = await (await client.get("/transparency", headers={"Accept-Language": "es"})).text()
    assert "Calles y aceras" in section(page, "Calles y aceras")
    assert "Ruidos y molestias" in page
    assert "Roads and sidewalks" not in page and "Noise and nuisance" not in page
    english = await (await client.get("/transparency", headers={"Accept-Language": "en"})).text()
    assert "Roads and sidewalks" in english and "Calles y aceras" not in english


async def request_in(hub: Hub, queue: str) -> str:
    accepted = await hub.intake.accept(inbound("vecina@example.org", "Hay un bache",
                                               channel="email", subject="Bache"))
    async with hub.db.transaction() as session:
        await session.execute(update(Conversation).where(
            Conversation.id == accepted.conversation_id).values(queue=queue))
    return accepted.reference


async def test_the_tracking_page_names_the_queue_only_by_its_citizen_title(
        client: TestClient, hub: Hub) -> None:
    roads = await request_in(hub, "roads")
    spanish = await (await client.get(f"/track/{roads}", headers={"Accept-Language": "es"})).text()
    assert '<dt>Atendida por</dt><dd id="service">Calles y aceras</dd>' in spanish
    english = await (await client.get(f"/track/{roads}", headers={"Accept-Language": "en"})).text()
    assert '<dt>Handled by</dt><dd id="service">Roads and sidewalks</dd>' in english
    vip = await request_in(hub, "executive")
    page = await (await client.get(f"/track/{vip}", headers={"Accept-Language": "es"})).text()
    assert 'id="service"' not in page and "VIP" not in page and "Mayor" not in page
