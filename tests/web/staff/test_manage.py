"""The conversation page's assign, transfer, priority and tags forms over HTTP: each goes
through hub.service (its rules, its audit), refusals say why, and none works without the CSRF
token."""

from __future__ import annotations

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from hub.app import Hub
from hub.storage.tables import AuditEntry, Conversation
from tests.web.staff.desk import ADMIN, AGENT, OUTSIDER, Desk, sign_in


async def _post(client: TestClient, desk: Desk, action: str, **data: str) -> tuple[int, str]:
    response = await client.post(f"/staff/conversations/{desk.conv}/{action}", data=data,
                                 allow_redirects=False)
    return response.status, await response.text()


async def _conversation(hub: Hub, desk: Desk) -> Conversation:
    async with hub.db.read() as session:
        return await session.get_one(Conversation, desk.conv)


async def test_the_page_offers_members_queues_and_priorities(client: TestClient,
                                                             desk: Desk) -> None:
    await sign_in(client)
    page = await (await client.get(f"/staff/conversations/{desk.conv}")).text()
    assign = page[page.index('id="assign-staff"'):page.index('id="transfer-queue"')]
    assert f'value="{AGENT}"' in assign and f'value="{ADMIN}"' in assign
    assert OUTSIDER not in assign
    assert 'value="taxes"' in page and '<option value="urgent">' in page
    assert '<label for="tags-add">' in page


async def test_assign_goes_through_the_service_and_refuses_a_non_member(
        client: TestClient, desk: Desk, hub: Hub) -> None:
    token = await sign_in(client)
    status, _ = await _post(client, desk, "assign", staff=ADMIN, csrf=token)
    assert status == 303
    status, page = await _post(client, desk, "assign", staff=OUTSIDER, csrf=token)
    assert status == 422 and 'role="alert"' in page and "is not a member of queue roads" in page
    conversation = await _conversation(hub, desk)
    async with hub.db.read() as session:
        actions = list(await session.scalars(select(AuditEntry.action).where(
            AuditEntry.target_id == str(desk.conv),
            AuditEntry.action == "conversation.assign")))
    assert conversation.assignee_id is not None and len(actions) == 1
    status, _ = await _post(client, desk, "assign", staff="", csrf=token)
    assert status == 303 and (await _conversation(hub, desk)).assignee_id is None


async def test_priority_and_tags(client: TestClient, desk: Desk, hub: Hub) -> None:
    token = await sign_in(client)
    assert (await _post(client, desk, "priority", priority="urgent", csrf=token))[0] == 303
    status, page = await _post(client, desk, "priority", priority="whenever", csrf=token)
    assert status == 422 and "is not a priority" in page
    assert (await _post(client, desk, "tags", add="lamp, elm ,", csrf=token))[0] == 303
    assert (await _post(client, desk, "tags", remove="lamp", csrf=token))[0] == 303
    conversation = await _conversation(hub, desk)
    assert conversation.priority == "urgent" and conversation.tags == ["elm"]
    page = await (await client.get(f"/staff/conversations/{desk.conv}?done=tags")).text()
    assert "Tags saved." in page and 'aria-label="Remove tag elm"' in page
    assert '<option value="urgent" selected>' in page


async def test_a_transfer_out_of_the_agents_queues_goes_back_to_the_list(
        client: TestClient, desk: Desk, hub: Hub) -> None:
    token = await sign_in(client)
    status, page = await _post(client, desk, "transfer", queue="nowhere", csrf=token)
    assert status == 422 and "there is no queue" in page
    response = await client.post(f"/staff/conversations/{desk.conv}/transfer",
                                 data={"queue": "taxes", "csrf": token}, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"].startswith("/staff/?")
    assert (await _conversation(hub, desk)).queue == "taxes"
    assert (await client.get(f"/staff/conversations/{desk.conv}")).status == 404


async def test_the_forms_need_the_csrf_token(client: TestClient, desk: Desk, hub: Hub) -> None:
    await sign_in(client)
    for action, data in (("assign", {"staff": ADMIN}), ("transfer", {"queue": "taxes"}),
                         ("priority", {"priority": "high"}), ("tags", {"add": "x"})):
        assert (await _post(client, desk, action, **data))[0] == 403, action
    conversation = await _conversation(hub, desk)
    assert (conversation.assignee_id, conversation.queue, conversation.priority,
            conversation.tags) == (None, "roads", "normal", [])


async def test_the_list_filters_by_tag_and_priority(client: TestClient, desk: Desk,
                                                    hub: Hub) -> None:
    token = await sign_in(client)
    await _post(client, desk, "tags", add="lamp", csrf=token)
    await _post(client, desk, "priority", priority="high", csrf=token)
    for query, shown in (("tag=lamp", True), ("tag=other", False), ("priority=high", True),
                         ("priority=low", False), ("tag=lamp&priority=high", True),
                         ("priority=bogus", True)):
        page = await (await client.get(f"/staff/?{query}")).text()
        assert (f'href="/staff/conversations/{desk.conv}"' in page) is shown, query
    page = await (await client.get("/staff/?tag=lamp&priority=high")).text()
    assert 'value="lamp"' in page and '<option value="high" selected>' in page
    assert 'class="badge">lamp</span>' in page and "priority high" in page


async def test_bulk_actions_run_each_and_summarise(client: TestClient, desk: Desk,
                                                   hub: Hub) -> None:
    token = await sign_in(client)
    page = await (await client.get("/staff/")).text()
    assert f'name="id" value="{desk.conv}"' in page and 'form="bulk"' in page
    # The outsider's conversation is not visible to the agent: refused, the other one claimed.
    response = await client.post("/staff/bulk", data=[
        ("csrf", token), ("action", "claim"), ("id", str(desk.outsider_conv)),
        ("id", str(desk.conv))])
    page = await response.text()
    assert response.status == 200 and "1 of 2 conversations: claim done." in page
    assert page.count("Refused:") == 1 and "Done</td>" in page
    response = await client.post("/staff/bulk", data=[
        ("csrf", token), ("action", "transfer"), ("queue", "taxes"), ("id", str(desk.conv))])
    assert "1 of 1 conversations: transfer done." in await response.text()
    async with hub.db.read() as session:
        moved = await session.get_one(Conversation, desk.conv)
        other = await session.get_one(Conversation, desk.outsider_conv)
    assert moved.queue == "taxes" and moved.assignee_id is None and other.assignee_id is None
    empty = await client.post("/staff/bulk", data={"csrf": token, "action": "resolve"})
    assert empty.status == 422 and "Select at least one" in await empty.text()
    no_token = await client.post("/staff/bulk", data={"action": "resolve", "id": str(desk.conv)})
    assert no_token.status == 403


async def test_bulk_resolve(client: TestClient, desk: Desk, hub: Hub) -> None:
    token = await sign_in(client, ADMIN)
    response = await client.post("/staff/bulk", data=[
        ("csrf", token), ("action", "resolve"), ("id", str(desk.conv)),
        ("id", str(desk.outsider_conv))])
    assert "2 of 2 conversations: resolve done." in await response.text()
    async with hub.db.read() as session:
        statuses = set(await session.scalars(select(Conversation.status).where(
            Conversation.id.in_([desk.conv, desk.outsider_conv]))))
    assert statuses == {"resolved"}
