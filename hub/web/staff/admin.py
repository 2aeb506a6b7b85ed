"""Administration pages of the workspace (admins only): staff accounts, and setting a staff
member's password (which ends every web session of theirs, see hub.auth.set_password).

Others get 404, as for a page that does not exist.
"""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy import select

from hub import audit
from hub.auth import set_password
from hub.service import ADMINS
from hub.storage.tables import Staff
from hub.web.keys import HUB_KEY
from hub.web.staff.guard import PREFIX, signed_in
from hub.web.staff.pages import frame
from hub.web.staff.queries import ListParams

MIN_PASSWORD = 8
STAFF_PAGE = f"{PREFIX}/admin/staff"


def _admin_only(request: web.Request) -> None:
    if signed_in(request).staff.role not in ADMINS:
        raise web.HTTPNotFound()


async def _render(request: web.Request, *, error: str | None = None, done: str | None = None,
                  status: int = 200) -> web.Response:
    async with request.app[HUB_KEY].db.read() as session:
        people = list(await session.scalars(select(Staff).order_by(Staff.email)))
        context = await frame(request, session, ListParams())
    return aiohttp_jinja2.render_template("staff/admin_staff.html", request, {
        **context, "title": "Staff accounts", "people": people, "error": error,
        "done": done, "min_password": MIN_PASSWORD}, status=status)


async def staff_page(request: web.Request) -> web.Response:
    _admin_only(request)
    return await _render(request, done=request.query.get("done", "")[:320] or None)


async def set_staff_password(request: web.Request) -> web.StreamResponse:
    _admin_only(request)
    form = await request.post()
    password, again = str(form.get("password", "")), str(form.get("again", ""))
    if len(password) < MIN_PASSWORD or len(password) > 1024:
        return await _render(request, status=422, error=(
            f"A password needs between {MIN_PASSWORD} and 1024 characters."))
    if password != again:
        return await _render(request, status=422, error="The two passwords differ.")
    actor = signed_in(request).staff
    async with request.app[HUB_KEY].db.transaction() as session:
        staff = await session.get(Staff, int(request.match_info["id"]))
        if staff is None:
            raise web.HTTPNotFound()
        await set_password(session, staff, password)
        audit.record(session, actor.email, "staff.password", "staff", staff.id)
        email = staff.email
    raise web.HTTPSeeOther(f"{STAFF_PAGE}?done={email}")
