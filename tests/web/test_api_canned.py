"""Canned responses through the staff API on both databases: supervisors manage them, staff
see the shared ones and their queues', placeholders are checked when saved and filled per
conversation, and nothing a citizen wrote is interpreted as a template."""

from __future__ import annotations

from aiohttp.test_utils import TestClient
from sqlalchemy import update

from hub.storage.tables import Contact
from tests.web.world import World, call

CANNED = "/api/v1/canned"
CONV = "/api/v1/conversations"


async def add(client: TestClient, world: World, name: str, body: str,
              queue: str | None = None, who: str = "supervisor") -> tuple[int, dict]:
    status, answer, _ = await call(client, "POST", CANNED, world.tokens[who],
                                   {"name": name, "body": body, "queue": queue})
    return status, answer


async def test_supervisors_add_texts_and_staff_see_theirs(client: TestClient,
                                                          world: World) -> None:
    assert (await add(client, world, "Thanks", "Thank you for writing."))[0] == 201
    assert (await add(client, world, "Crew", "Workers will come.", "roads"))[0] == 201
    assert (await add(client, world, "Tax office", "See the tax office.", "taxes"))[0] == 201
    status, body, _ = await call(client, "GET", CANNED, world.tokens["agent"])  # roads only
    # ("On its way" is the world's own text for roads.)
    assert status == 200
    assert [c["name"] for c in body["items"]] == ["Crew", "On its way", "Thanks"]
    assert "citizen_name" in body["placeholders"] and "reference" in body["placeholders"]
    _, body, _ = await call(client, "GET", f"{CANNED}?q=WORKERS", world.tokens["agent"])
    assert [c["name"] for c in body["items"]] == ["Crew"]
    _, body, _ = await call(client, "GET", CANNED, world.tokens["supervisor"])
    assert [c["name"] for c in body["items"]] == ["Crew", "On its way", "Tax office", "Thanks"]
    _, body, _ = await call(client, "GET", f"{CANNED}?queue=taxes", world.tokens["supervisor"])
    assert [c["name"] for c in body["items"]] == ["Tax office", "Thanks"]
    # Agents use them; they do not manage them.
    status, body = await add(client, world, "Mine", "Hi", who="agent")
    assert status == 403
    first = (await call(client, "GET", CANNED, world.tokens["agent"]))[1]["items"][0]
    assert (await call(client, "DELETE", f"{CANNED}/{first['id']}",
                       world.tokens["agent"]))[0] == 403
    assert (await call(client, "DELETE", f"{CANNED}/{first['id']}",
                       world.tokens["supervisor"]))[0] == 204
    _, body, _ = await call(client, "GET", CANNED, world.tokens["agent"])
    assert [c["name"] for c in body["items"]] == ["On its way", "Thanks"]


async def test_a_name_is_taken_once_per_scope(client: TestClient, world: World) -> None:
    assert (await add(client, world, "Thanks", "Thank you."))[0] == 201
    status, body = await add(client, world, "thanks", "Thanks again.")
    assert status == 409 and body["error"]["code"] == "conflict"
    assert (await add(client, world, "Thanks", "Thanks, roads.", "roads"))[0] == 201
    status, body = await add(client, world, "Other", "Hi", "no-such-queue")
    assert status == 422 and "queue" in body["error"]["message"]


async def test_placeholders_are_checked_when_saved(client: TestClient, world: World) -> None:
    status, body = await add(client, world, "Typo", "Your reference: {{ refrence }}")
    assert status == 422 and "refrence" in body["error"]["message"]
    assert "reference" in body["error"]["message"]  # the known ones are listed
    status, body = await add(client, world, "Broken", "Hello {{ citizen_name ")
    assert status == 422 and "not a valid template" in body["error"]["message"]
    status, body = await add(client, world, "Sneaky", "{{ ''.__class__.__mro__ }}")
    assert status == 422 and "cannot be filled in" in body["error"]["message"]


async def test_a_text_is_filled_in_for_a_conversation(client: TestClient,
                                                      world: World) -> None:
    async with world.hub.db.transaction() as session:
        await session.execute(update(Contact).where(Contact.id == world.conv_contact)
                              .values(name="Ada {{ reference }} <b>"))
    _, made = await add(client, world, "Crew",
                        "Hello {{ citizen_name }}, about {{ reference }} ({{ queue }}): "
                        "{{ staff_name }} is on it.", "roads")
    url = f"{CONV}/{world.conv}/canned/{made['id']}"
    status, body, _ = await call(client, "GET", url, world.tokens["agent"])
    _, detail, _ = await call(client, "GET", f"{CONV}/{world.conv}", world.tokens["agent"])
    assert status == 200
    # The citizen's name is a value, never a template: it is inserted as written.
    assert body["body"] == (f"Hello Ada {{{{ reference }}}} <b>, about {detail['reference']} "
                            "(roads): Agent is on it.")
    # A text of another queue, or a conversation the caller cannot see: not found.
    _, taxes = await add(client, world, "Tax", "See the tax office.", "taxes")
    status, _, _ = await call(client, "GET", f"{CONV}/{world.conv}/canned/{taxes['id']}",
                              world.tokens["agent"])
    assert status == 404
    status, _, _ = await call(client, "GET", f"{CONV}/{world.taxes_conv}/canned/{made['id']}",
                              world.tokens["agent"])
    assert status == 404
