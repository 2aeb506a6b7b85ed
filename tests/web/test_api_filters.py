"""Spam has a place and conversations can be found, on both databases: spam is left out of the
lists unless asked for (`spam=true`), shows as `spam`, and "not spam" routes it again as if new;
`q=` finds a conversation by the citizen's phone or address; filters by tag, priority and
assignee (an email, `me`, `none`)."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import update

from hub.storage.tables import Conversation
from tests.web.world import World, call

WORLD_SET_ASIDE = True  # the world has a spam conversation
LIST = "/api/v1/conversations"


async def ids(client: TestClient, world: World, query: str, who: str = "supervisor") -> set[int]:
    status, body, _ = await call(client, "GET", f"{LIST}?{query}", world.tokens[who])
    assert status == 200, body
    return {item["id"] for item in body["items"]}


async def test_spam_is_listed_apart_and_not_spam_routes_it_as_new(client: TestClient,
                                                                 world: World) -> None:
    assert world.spam_conv not in await ids(client, world, "limit=100")
    status, body, _ = await call(client, "GET", f"{LIST}?spam=true", world.tokens["supervisor"])
    assert [(i["id"], i["spam"], i["queue"]) for i in body["items"]] == [
        (world.spam_conv, True, None)]
    assert await ids(client, world, "spam=true", who="agent") == set()

    path = f"{LIST}/{world.spam_conv}/not-spam"
    status, item, _ = await call(client, "POST", path, world.tokens["supervisor"])
    assert status == 200 and item["spam"] is False and item["queue"] == "general"
    assert world.spam_conv in await ids(client, world, "queue=general")
    again, answer, _ = await call(client, "POST", path, world.tokens["supervisor"])
    assert again == 409 and answer["error"]["code"] == "conflict"


async def test_q_finds_a_conversation_by_the_citizens_phone(client: TestClient,
                                                           world: World) -> None:
    assert await ids(client, world, "q=%2B15550000001") == {world.conv}
    assert await ids(client, world, "q=5550000002") == {world.taxes_conv,
                                                        world.roads_conv_of_both}
    assert await ids(client, world, "q=5550000002", who="agent") == {world.roads_conv_of_both}


async def test_filters_by_tag_priority_and_assignee(client: TestClient, world: World) -> None:
    async with world.hub.db.transaction() as session:
        conversation = await session.get_one(Conversation, world.conv)
        conversation.tags = ["roads", "has-photo"]  # through the ORM: the tag rows follow
        await session.execute(update(Conversation).where(Conversation.id == world.taxes_conv)
                              .values(priority="urgent"))
    assert await ids(client, world, "tag=has-photo") == {world.conv}
    assert await ids(client, world, "tag=nothing") == set()
    assert await ids(client, world, "priority=urgent") == {world.taxes_conv}

    status, _, _ = await call(client, "POST", f"{LIST}/{world.conv}/claim",
                              world.tokens["agent"])
    assert status == 200
    assert await ids(client, world, "assignee=me", who="agent") == {world.conv}
    assert await ids(client, world, f"assignee={world.emails['agent']}") == {world.conv}
    assert world.conv not in await ids(client, world, "assignee=none")
    assert await ids(client, world, "assignee=nobody%40city.example") == set()
    bad: Any = await call(client, "GET", f"{LIST}?priority=whenever", world.tokens["agent"])
    assert bad[0] == 422
