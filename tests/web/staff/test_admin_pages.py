"""The administration pages over HTTP: staff accounts (add, role and queues, deactivate), API
tokens (created and shown once, revoked), and the read-only queues and rule set views. Admins
only: others get 404, as for a page that does not exist."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from hub.app import Hub
from hub.auth import staff_for_token
from hub.queues import member_queue_names
from hub.staff import find_staff
from hub.storage.tables import Staff, WebSession
from tests.web.staff.desk import ADMIN, AGENT, Desk, sign_in


async def _staff(hub: Hub, email: str) -> tuple[Staff, set[str]]:
    async with hub.db.read() as session:
        staff = await find_staff(session, email)
        assert staff is not None
        return staff, await member_queue_names(session, staff)


async def test_only_admins_reach_the_admin_pages(client: TestClient, desk: Desk,
                                                 hub: Hub) -> None:
    token = await sign_in(client)
    agent, _ = await _staff(hub, AGENT)
    for path in ("/staff/admin/queues", "/staff/admin/rules", f"/staff/admin/staff/{agent.id}"):
        assert (await client.get(path)).status == 404, path
    for path, data in (("/staff/admin/staff/add", {"email": "x@city.example", "name": "X",
                                                   "role": "admin"}),
                       (f"/staff/admin/staff/{agent.id}/access", {"role": "admin"}),
                       (f"/staff/admin/staff/{agent.id}/tokens", {})):
        response = await client.post(path, data={**data, "csrf": token}, allow_redirects=False)
        assert response.status == 404, path
    assert (await _staff(hub, AGENT))[0].role == "agent"


async def test_add_a_staff_member_then_change_role_and_queues(client: TestClient, desk: Desk,
                                                              hub: Hub) -> None:
    token = await sign_in(client, ADMIN)
    page = await (await client.get("/staff/admin/staff")).text()
    assert '<legend>Role</legend>' in page and '<label for="add-email">Email</label>' in page
    response = await client.post("/staff/admin/staff/add", allow_redirects=False, data=[
        ("csrf", token), ("email", "New@City.example"), ("name", "Nora New"), ("role", "agent"),
        ("queues", "roads"), ("queues", "taxes")])
    assert response.status == 303, await response.text()
    new, queues = await _staff(hub, "new@city.example")
    assert (new.name, new.role, queues) == ("Nora New", "agent", {"roads", "taxes"})
    assert response.headers["Location"] == f"/staff/admin/staff/{new.id}?done=added"
    again = await client.post("/staff/admin/staff/add", data={
        "csrf": token, "email": "new@city.example", "name": "Nora", "role": "agent"})
    assert again.status == 422 and "exists already" in await again.text()
    response = await client.post(f"/staff/admin/staff/{new.id}/access", allow_redirects=False,
                                 data={"csrf": token, "role": "supervisor", "queues": "taxes"})
    assert response.status == 303
    new, queues = await _staff(hub, "new@city.example")
    assert (new.role, queues) == ("supervisor", {"taxes"})
    page = await (await client.get(f"/staff/admin/staff/{new.id}?done=access")).text()
    assert "Role and queues saved." in page and 'value="supervisor" checked' in page
    admin, _ = await _staff(hub, ADMIN)
    own = await client.post(f"/staff/admin/staff/{admin.id}/access",
                            data={"csrf": token, "role": "agent"})
    assert own.status == 422 and "your own admin role" in await own.text()


async def test_deactivating_ends_the_sessions(client: TestClient, desk: Desk, hub: Hub) -> None:
    await sign_in(client)  # the agent has a session
    token = await sign_in(client, ADMIN)
    agent, _ = await _staff(hub, AGENT)
    response = await client.post(f"/staff/admin/staff/{agent.id}/active", allow_redirects=False,
                                 data={"csrf": token, "active": "0"})
    assert response.status == 303
    async with hub.db.read() as session:
        left = await session.scalar(select(func.count()).select_from(WebSession).where(
            WebSession.staff_id == agent.id))
    assert left == 0 and not (await _staff(hub, AGENT))[0].active
    page = await (await client.get(f"/staff/admin/staff/{agent.id}")).text()
    assert "Reactivate" in page
    admin, _ = await _staff(hub, ADMIN)
    own = await client.post(f"/staff/admin/staff/{admin.id}/active",
                            data={"csrf": token, "active": "0"})
    assert own.status == 422 and (await _staff(hub, ADMIN))[0].active


async def test_an_api_token_is_shown_once_and_can_be_revoked(client: TestClient, desk: Desk,
                                                             hub: Hub) -> None:
    token = await sign_in(client, ADMIN)
    agent, _ = await _staff(hub, AGENT)
    response = await client.post(f"/staff/admin/staff/{agent.id}/tokens", data={"csrf": token})
    page = await response.text()
    assert response.status == 201 and "it is not shown again" in page
    found = re.search(r'id="new-token" readonly value="([^"]+)"', page)
    assert found is not None
    secret = found.group(1)
    async with hub.db.read() as session:
        assert (await staff_for_token(session, secret)) is not None
    later = await (await client.get(f"/staff/admin/staff/{agent.id}")).text()
    assert secret not in later and secret[:12] in later
    token_id = re.search(r"/tokens/(\d+)/revoke", later)
    assert token_id is not None
    response = await client.post(
        f"/staff/admin/staff/{agent.id}/tokens/{token_id.group(1)}/revoke",
        data={"csrf": token}, allow_redirects=False)
    assert response.status == 303
    async with hub.db.read() as session:
        assert (await staff_for_token(session, secret)) is None
    assert "revoked " in await (await client.get(f"/staff/admin/staff/{agent.id}")).text()


class _Rules:
    version = "v42abc"

    def status(self) -> dict[str, Any]:
        at = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)
        return {"version": self.version, "loaded_at": at, "rules_dir": "/etc/hub/rules",
                "errors": [], "last_refused": {"at": at, "errors": [
                    "rules/roads.toml:7: unknown field 'qeue'"]}}


async def test_queues_and_rules_read_only(client: TestClient, desk: Desk, hub: Hub,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    await sign_in(client, ADMIN)
    page = await (await client.get("/staff/admin/queues")).text()
    roads = page[page.index("<td>roads"):]
    roads = roads[:roads.index("</tr>")]
    assert "Roads" in roads and "manual" in roads and AGENT in roads
    default = await (await client.get("/staff/admin/rules")).text()
    assert "No change was refused." in default
    monkeypatch.setattr(hub, "rules", _Rules())
    page = await (await client.get("/staff/admin/rules")).text()
    assert "v42abc" in page and "2026-11-30 09:15:00 UTC" in page
    assert "rules/roads.toml:7: unknown field &#39;qeue&#39;" in page
