"""Bulk actions on the list: claim, resolve or transfer the selected conversations, each one
through hub.service on its own (a refused one does not stop the others), then a summary page
of what happened to each."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp_jinja2
from aiohttp import web

from hub import service
from hub.model import ConversationStatus
from hub.storage.tables import Staff
from hub.web.keys import HUB_KEY
from hub.web.staff.guard import signed_in
from hub.web.staff.pages import frame
from hub.web.staff.queries import ListParams

if TYPE_CHECKING:
    from hub.app import Hub

MAX_SELECTED = 100
Call = Callable[["Hub", Staff, int], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class Outcome:
    conversation_id: int
    done: bool
    message: str


def _call(action: str, queue: str) -> Call | None:
    def claim(hub: Hub, staff: Staff, conversation_id: int) -> Awaitable[object]:
        return service.claim(hub.db, staff, conversation_id, publish=hub.events.publish)

    def resolve(hub: Hub, staff: Staff, conversation_id: int) -> Awaitable[object]:
        return service.set_status(hub.db, staff, conversation_id,
                                  ConversationStatus.RESOLVED.value, publish=hub.events.publish,
                                  notify=hub.status_notices,
                                  submit_delivery=hub.jobs.submit_delivery)

    def transfer(hub: Hub, staff: Staff, conversation_id: int) -> Awaitable[object]:
        return service.transfer(hub.db, staff, conversation_id, queue,
                                publish=hub.events.publish)

    return {"claim": claim, "resolve": resolve, "transfer": transfer}.get(action)


def _selected(values: Iterable[object]) -> list[int]:
    ids = [int(v) for v in values if isinstance(v, str) and v.isdigit() and len(v) <= 18]
    return list(dict.fromkeys(ids))[:MAX_SELECTED]


async def _run(request: web.Request, call: Call, ids: list[int]) -> list[Outcome]:
    hub, staff = request.app[HUB_KEY], signed_in(request).staff
    outcomes = []
    for conversation_id in ids:
        try:
            await call(hub, staff, conversation_id)
        except service.ServiceError as exc:
            outcomes.append(Outcome(conversation_id, False, exc.message))
        else:
            outcomes.append(Outcome(conversation_id, True, "done"))
    return outcomes


async def bulk(request: web.Request) -> web.Response:
    form = await request.post()
    action = str(form.get("action", ""))
    call = _call(action, str(form.get("queue", ""))[:64])
    ids = _selected(form.getall("id", []))
    error = None
    if call is None:
        error = "Choose claim, resolve or transfer."
    elif not ids:
        error = "Select at least one conversation first."
    outcomes = await _run(request, call, ids) if call is not None and ids else []
    async with request.app[HUB_KEY].db.read() as session:
        context = await frame(request, session, ListParams())
    return aiohttp_jinja2.render_template("staff/bulk.html", request, {
        **context, "title": "Bulk action", "action": action, "outcomes": outcomes,
        "error": error, "done_count": sum(o.done for o in outcomes)},
        status=422 if error else 200)
