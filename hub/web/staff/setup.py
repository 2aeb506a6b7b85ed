"""Read-only administration views (admins only): the queues as queues.toml made them (title,
strategy, capacity, calendar, who is dealt to, members), every API token (made and revoked on
its owner's page), and the rule set's status (version, when it went live, the folder's errors
and the last refused change with its `path:line` errors), as `GET /api/v1/rules` reports it."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy import select

from hub.storage.tables import ApiToken, Queue, QueueMember, Staff
from hub.web.keys import HUB_KEY
from hub.web.staff.admin import admin_only
from hub.web.staff.pages import frame
from hub.web.staff.queries import ListParams


async def queues_page(request: web.Request) -> web.Response:
    admin_only(request)
    async with request.app[HUB_KEY].db.read() as session:
        queues = list(await session.scalars(select(Queue).order_by(Queue.name)))
        rows = await session.execute(
            select(QueueMember.queue_id, Staff.email).join(Staff, Staff.id == QueueMember.staff_id)
            .order_by(Staff.email))
        members: dict[int, list[str]] = {}
        for queue_id, email in rows:
            members.setdefault(queue_id, []).append(email)
        context = await frame(request, session, ListParams())
    return aiohttp_jinja2.render_template("staff/admin_queues.html", request, {
        **context, "title": "Queues", "all_queues": queues, "members": members})


def _rules_status(request: web.Request) -> dict[str, Any]:
    rules = request.app[HUB_KEY].rules
    if rules is None:
        return {"version": "default", "loaded_at": None, "rules_dir": None, "errors": [],
                "last_refused": None}
    return {**rules.status(), "version": rules.version}


async def rules_page(request: web.Request) -> web.Response:
    admin_only(request)
    async with request.app[HUB_KEY].db.read() as session:
        context = await frame(request, session, ListParams())
    return aiohttp_jinja2.render_template("staff/admin_rules.html", request, {
        **context, "title": "Rule set", "rules": _rules_status(request)})


async def tokens_page(request: web.Request) -> web.Response:
    admin_only(request)
    async with request.app[HUB_KEY].db.read() as session:
        tokens = (await session.execute(
            select(ApiToken.prefix, ApiToken.created_at, ApiToken.last_used_at,
                   ApiToken.revoked_at, Staff.id.label("staff_id"), Staff.email)
            .join(Staff, Staff.id == ApiToken.staff_id)
            .order_by(ApiToken.revoked_at.is_not(None), Staff.email, ApiToken.id))).all()
        context = await frame(request, session, ListParams())
    return aiohttp_jinja2.render_template("staff/admin_tokens.html", request, {
        **context, "title": "API tokens", "tokens": tokens})
