"""Administration of staff accounts (admins only, like hub.web.staff.admin): add one (through
hub.staff.add_staff), change a person's role and queues, deactivate or reactivate them (which
ends their web sessions; their API tokens stop working while inactive), and their API tokens:
create one (its clear text shown once, hub.auth.create_token) and revoke one.

Every change is audited; an admin cannot take their own admin role or account away.
"""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub import audit
from hub.auth import create_token
from hub.model import utcnow
from hub.queues import member_queue_names, set_membership
from hub.service import ADMIN, ROLES
from hub.staff import StaffError, add_staff
from hub.storage.tables import ApiToken, Queue, QueueMember, Staff, WebSession
from hub.web.keys import HUB_KEY
from hub.web.staff.admin import STAFF_PAGE, admin_only, render_staff
from hub.web.staff.guard import signed_in
from hub.web.staff.pages import frame
from hub.web.staff.queries import ListParams


def _person_id(request: web.Request) -> int:
    return int(request.match_info["id"])


async def _person(session: AsyncSession, staff_id: int) -> Staff:
    staff = await session.get(Staff, staff_id)
    if staff is None:
        raise web.HTTPNotFound()
    return staff


async def _render_person(request: web.Request, *, status: int = 200,
                         **extra: Any) -> web.Response:
    async with request.app[HUB_KEY].db.read() as session:
        person = await _person(session, _person_id(request))
        context = {
            **await frame(request, session, ListParams()), "person": person,
            "title": f"Staff account {person.email}", "roles": ROLES,
            "all_queues": list(await session.scalars(select(Queue).order_by(Queue.name))),
            "member_of": await member_queue_names(session, person),
            "tokens": list(await session.scalars(select(ApiToken).where(
                ApiToken.staff_id == person.id).order_by(ApiToken.id)))}
    return aiohttp_jinja2.render_template("staff/admin_person.html", request,
                                          {**context, **extra}, status=status)


def _back(staff_id: int, done: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"{STAFF_PAGE}/{staff_id}?done={done}")


async def person_page(request: web.Request) -> web.Response:
    admin_only(request)
    return await _render_person(request, done=request.query.get("done", "")[:20])


def _strings(form: Any, name: str) -> list[str]:
    return [v.strip() for v in form.getall(name, []) if isinstance(v, str) and v.strip()]


async def add_person(request: web.Request) -> web.StreamResponse:
    admin_only(request)
    form = await request.post()
    actor = signed_in(request).staff.email
    try:
        async with request.app[HUB_KEY].db.transaction() as session:
            staff = await add_staff(session, str(form.get("email", ""))[:320],
                                    name=str(form.get("name", ""))[:200],
                                    role=str(form.get("role", "")),
                                    queues=_strings(form, "queues"), actor=actor)
            staff_id = staff.id
    except StaffError as exc:
        return await render_staff(request, status=422, error=str(exc))
    raise _back(staff_id, "added")


async def _set_queues(session: AsyncSession, person: Staff, queues: list[str]) -> None:
    """Exactly these queues (KeyError names unknown ones)."""
    await session.execute(delete(QueueMember).where(
        QueueMember.staff_id == person.id,
        QueueMember.queue_id.not_in(select(Queue.id).where(Queue.name.in_(queues)))))
    await set_membership(session, person, queues)


def _own_admin(request: web.Request, staff_id: int) -> bool:
    return signed_in(request).staff.id == staff_id


async def set_access(request: web.Request) -> web.StreamResponse:
    """Role and queues, from the person page's form."""
    admin_only(request)
    form, staff_id = await request.post(), _person_id(request)
    role, queues = str(form.get("role", "")), _strings(form, "queues")
    if role not in ROLES:
        return await _render_person(request, status=422, error="Choose a role.")
    if _own_admin(request, staff_id) and role != ADMIN:
        return await _render_person(request, status=422,
                                    error="You cannot take away your own admin role.")
    try:
        async with request.app[HUB_KEY].db.transaction() as session:
            person = await _person(session, staff_id)
            person.role = role
            await _set_queues(session, person, queues)
            audit.record(session, signed_in(request).staff.email, "staff.access", "staff",
                         staff_id, role=role, queues=sorted(queues))
    except KeyError as exc:
        return await _render_person(request, status=422, error=f"Unknown queue: {exc.args[0]}")
    raise _back(staff_id, "access")


async def set_active(request: web.Request) -> web.StreamResponse:
    """Deactivate (`active` = 0: their web sessions end) or reactivate."""
    admin_only(request)
    active, staff_id = (await request.post()).get("active") == "1", _person_id(request)
    if _own_admin(request, staff_id) and not active:
        return await _render_person(request, status=422,
                                    error="You cannot deactivate your own account.")
    async with request.app[HUB_KEY].db.transaction() as session:
        person = await _person(session, staff_id)
        person.active = active
        if not active:
            await session.execute(delete(WebSession).where(WebSession.staff_id == staff_id))
        audit.record(session, signed_in(request).staff.email,
                     "staff.activate" if active else "staff.deactivate", "staff", staff_id)
    raise _back(staff_id, "active" if active else "inactive")


async def new_token(request: web.Request) -> web.Response:
    """A new API token, shown on this response only (it is stored as a hash)."""
    admin_only(request)
    async with request.app[HUB_KEY].db.transaction() as session:
        person = await _person(session, _person_id(request))
        token = await create_token(session, person)
        audit.record(session, signed_in(request).staff.email, "staff.token_create", "staff",
                     person.id, prefix=token[:12])
    return await _render_person(request, status=201, new_token=token)


async def revoke_token(request: web.Request) -> web.StreamResponse:
    admin_only(request)
    staff_id, token_id = _person_id(request), int(request.match_info["token_id"])
    async with request.app[HUB_KEY].db.transaction() as session:
        token = await session.get(ApiToken, token_id)
        if token is None or token.staff_id != staff_id:
            raise web.HTTPNotFound()
        if token.revoked_at is None:
            token.revoked_at = utcnow()
            audit.record(session, signed_in(request).staff.email, "staff.token_revoke",
                         "staff", staff_id, prefix=token.prefix)
    raise _back(staff_id, "revoked")
