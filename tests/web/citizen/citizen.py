"""Helpers for the citizen page tests: fill a form over HTTP as a browser would (multipart,
with the CSRF cookie and the form token of the page), read what was stored, and answer as staff
through the API."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from aiohttp import FormData
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from hub.app import Hub
from hub.auth import create_token
from hub.staff import add_staff
from hub.storage.tables import Attachment, Conversation, Message
from hub.web.citizen import guard

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.7\n" + b"\x00" * 64
POTHOLE = {"where.address": "12 Elm St", "hazard": "yes", "size": "large",
           "description": "A deep hole in the bus lane", "email": "jane@example.org"}
HIDDEN_RE = re.compile(r'name="(csrf|form_token|message_token)" value="([^"]+)"')


def hidden(html: str) -> dict[str, str]:
    return dict(HIDDEN_RE.findall(html))


async def open_form(client: TestClient, form_id: str = "pothole",
                    headers: dict[str, str] | None = None) -> dict[str, str]:
    """The hidden fields of the form page (the CSRF cookie lands in the client's jar)."""
    page = await client.get(f"/forms/{form_id}", headers=headers)
    assert page.status == 200, await page.text()
    return hidden(await page.text())


def multipart(fields: dict[str, Any], files: Sequence[tuple[str, str, str, bytes]] = ()) -> FormData:
    data = FormData()
    for key, value in fields.items():
        for one in value if isinstance(value, list) else [value]:
            data.add_field(key, one)
    for name, filename, content_type, content in files:
        data.add_field(name, content, filename=filename, content_type=content_type)
    return data


async def post_form(client: TestClient, fields: dict[str, Any], *, form_id: str = "pothole",
                    files: Sequence[tuple[str, str, str, bytes]] = (),
                    hidden_fields: dict[str, str] | None = None,
                    headers: dict[str, str] | None = None) -> Any:
    tokens = hidden_fields if hidden_fields is not None else await open_form(client, form_id,
                                                                             headers)
    return await client.post(f"/forms/{form_id}", data=multipart({**tokens, **fields}, files),
                             headers=headers, allow_redirects=False)


async def count(hub: Hub, table: type) -> int:
    async with hub.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)


async def stored(hub: Hub) -> tuple[int, int, int]:
    return (await count(hub, Conversation), await count(hub, Message),
            await count(hub, Attachment))


def limit_rate(client: TestClient, per_minute: float) -> None:
    """Narrows the citizen pages' rate limit of the app `client` serves."""
    app = client.app
    assert app is not None
    limiter = app[guard.LIMITER_KEY]
    limiter.capacity, limiter.rate = per_minute, per_minute / 60


async def conversation_id(hub: Hub, reference: str) -> int:
    async with hub.db.read() as session:
        found = await session.scalar(select(Conversation.id).where(
            Conversation.reference == reference))
    assert found is not None
    return int(found)


async def staff_token(hub: Hub, email: str = "clerk@city.example",
                      name: str = "Clara Clerk") -> str:
    async with hub.db.transaction() as session:
        clerk = await add_staff(session, email, name=name, role="supervisor")
        return await create_token(session, clerk)


async def staff_call(client: TestClient, token: str, path: str, body: dict[str, Any]) -> Any:
    response = await client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status in (200, 201, 202), await response.text()
    return await response.json()
