"""The authorization matrix: every API endpoint x every kind of caller, against a conversation in
queue `roads`. Members, supervisors and admins act; the outsider (an agent of `taxes`) gets 404 or
a list without it; role-gated endpoints answer 403; no or bad tokens 401. After every refusal the
database is unchanged and the answer does not contain the conversation's reference or text.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from hub.web.api import ROUTES
from tests.web.world import World, call, snapshot

CALLERS = ("agent", "outsider", "supervisor", "admin", "none", "garbage", "revoked")
CONV = "/api/v1/conversations/{conv}"
WORLD_SET_ASIDE = True  # a failed spool item and a dead outbox item to retry
NEW_STAFF = {"email": "new@city.example", "name": "New", "role": "agent", "queues": ["roads"]}

# kind: conv = acts on the roads conversation (outsider 404); list = filtered for the outsider;
# admin / supervisor = role-gated (403 below the role).
ENDPOINTS: list[tuple[str, str, str, Any, int, str]] = [
    # name           method  path                                  body            ok   kind
    ("detail",       "GET",  CONV,                                 None,           200, "conv"),
    ("reply",        "POST", CONV + "/replies",                    {"body": "Hi"}, 202, "conv"),
    ("note",         "POST", CONV + "/notes",                      {"body": "n"},  201, "conv"),
    ("claim",        "POST", CONV + "/claim",                      None,           200, "conv"),
    ("assign",       "POST", CONV + "/assign",          {"staff": "agent@city.example"}, 200,
     "conv"),
    ("transfer",     "POST", CONV + "/transfer",                   {"queue": "general"}, 200,
     "conv"),
    ("status",       "POST", CONV + "/status",            {"status": "resolved"}, 200, "conv"),
    ("contact",      "GET",  "/api/v1/contacts/{contact}",         None,           200, "conv"),
    ("attachment",   "GET",  "/api/v1/attachments/{attachment}",   None,           200, "conv"),
    ("list",         "GET",  "/api/v1/conversations",              None,           200, "list"),
    ("search",       "GET",  "/api/v1/conversations?q=POTHOLE",    None,           200, "list"),
    ("by queue",     "GET",  "/api/v1/conversations?queue=roads",  None,           200, "list"),
    ("queues",       "GET",  "/api/v1/queues",                     None,           200, "list"),
    ("shared contact", "GET", "/api/v1/contacts/{both}",           None,           200, "list"),
    ("merge contacts", "POST", "/api/v1/contacts/{contact}/merge", {"contact_id": "{both}"},
     200, "supervisor"),
    ("staff list",   "GET",  "/api/v1/staff",                      None,           200, "admin"),
    ("staff add",    "POST", "/api/v1/staff",                      NEW_STAFF,      201, "admin"),
    ("outbox",       "GET",  "/api/v1/outbox?state=dead",          None,           200,
     "supervisor"),
    ("rules",        "GET",  "/api/v1/rules",                      None,           200,
     "supervisor"),
    ("not spam",     "POST", "/api/v1/conversations/{spam}/not-spam", None,        200,
     "supervisor"),
    ("outbox retry", "POST", "/api/v1/outbox/{outbox}/retry",      None,           200,
     "supervisor"),
    ("spool",        "GET",  "/api/v1/spool?state=all&limit=5",    None,           200,
     "supervisor"),
    ("spool item",   "GET",  "/api/v1/spool/{spool}",              None,           200,
     "supervisor"),
    ("spool retry",  "POST", "/api/v1/spool/{spool}/retry",        {},             200,
     "supervisor"),
    ("stats",        "GET",  "/api/v1/stats",                      None,           200,
     "supervisor"),
    ("stats csv",    "GET",  "/api/v1/stats.csv",                  None,           200,
     "supervisor"),
    ("canned list",  "GET",  "/api/v1/canned",                     None,           200, "list"),
    ("canned fill",  "GET",  CONV + "/canned/{canned}",            None,           200, "conv"),
    ("canned add",   "POST", "/api/v1/canned", {"name": "Hi", "body": "Hi {{ reference }}"}, 201,
     "supervisor"),
    ("canned delete", "DELETE", "/api/v1/canned/{canned}",         None,           204,
     "supervisor"),
    # A WebSocket: without an Upgrade, an authorised caller gets 426 (after the auth check).
    ("events",       "GET",  "/api/v1/events",                     None,           426, "list"),
]

ALLOWED = {
    "conv": {"agent", "supervisor", "admin"},
    "list": {"agent", "outsider", "supervisor", "admin"},
    "admin": {"admin"},
    "supervisor": {"supervisor", "admin"},
}
SEES_ROADS = {"agent", "supervisor", "admin"}


def expected_refusal(who: str, kind: str) -> int:
    if who in ("none", "garbage", "revoked"):
        return 401
    return 404 if kind == "conv" else 403


def token_for(world: World, who: str) -> str | None:
    return {"none": None, "garbage": "hub_" + "x" * 43}.get(who, world.tokens.get(who))


async def roads_references(client: TestClient, world: World) -> list[str]:
    """References of both conversations in queue `roads` (the outsider must never see them)."""
    found = []
    for conversation_id in (world.conv, world.roads_conv_of_both):
        _, body, _ = await call(client, "GET", f"/api/v1/conversations/{conversation_id}",
                                world.tokens["supervisor"])
        found.append(body["reference"])
    return found


def fill(path: str, world: World) -> str:
    return path.format(conv=world.conv, contact=world.conv_contact,
                       attachment=world.attachment, both=world.both_contact,
                       spool=world.spool, outbox=world.outbox, spam=world.spam_conv,
                       canned=world.canned)


def fill_body(body: Any, world: World) -> Any:
    """A body's "{name}" values as the world's ids (a contact to merge)."""
    if not isinstance(body, dict):
        return body
    return {k: int(fill(v, world)) if isinstance(v, str) and v.startswith("{") else v
            for k, v in body.items()}


def cases() -> list[Any]:
    """Each endpoint once per caller allowed to use it (each changes the world, so each has its
    own) and once for all the callers it refuses together: a refusal changes nothing, so they
    share one world, and every one of them is checked."""
    return [pytest.param(who, *endpoint, id=f"{who}-{endpoint[0]}")
            for endpoint in ENDPOINTS
            for who in [*sorted(ALLOWED[endpoint[5]]), "refused"]]


@pytest.mark.parametrize(("who", "name", "method", "path", "body", "ok", "kind"), cases())
async def test_matrix(client: TestClient, world: World, who: str, name: str, method: str,
                      path: str, body: Any, ok: int, kind: str) -> None:
    references = await roads_references(client, world)
    before = await snapshot(world.hub)
    if who == "refused":
        for refused in (c for c in CALLERS if c not in ALLOWED[kind]):
            await check_refused(client, world, refused, method, path, body, kind, references)
        assert await snapshot(world.hub) == before
        return
    status, answer, _ = await call(client, method, fill(path, world), token_for(world, who),
                                   fill_body(body, world))
    after = await snapshot(world.hub)
    shown = str(answer)
    assert status == ok, answer
    if kind == "list" and name not in ("queues", "events", "canned list"):
        assert any(r in shown for r in references) == (who in SEES_ROADS), shown
    if name == "queues":
        assert ("'roads'" in shown) == (who in SEES_ROADS), shown
    if method in ("POST", "DELETE"):
        assert after != before


async def check_refused(client: TestClient, world: World, who: str, method: str, path: str,
                        body: Any, kind: str, references: list[str]) -> None:
    before = await snapshot(world.hub)
    status, answer, headers = await call(client, method, fill(path, world),
                                         token_for(world, who), fill_body(body, world))
    shown = str(answer)
    assert status == expected_refusal(who, kind), (who, answer)
    assert set(answer) == {"error"} and set(answer["error"]) == {"code", "message"}, who
    assert not any(r in shown for r in references) and "Pothole" not in shown, who
    assert await snapshot(world.hub) == before, who
    if status == 401:
        assert headers["WWW-Authenticate"].startswith("Bearer")


def test_every_api_route_is_in_the_matrix() -> None:
    covered = {(method, path.split("?")[0]) for _, method, path, *_ in ENDPOINTS}
    routes = {(r.method, re.sub(r"\{\w+\}", "{x}", r.path)) for r in ROUTES if not r.public}
    normalised = {(m, re.sub(r"\{\w+\}", "{x}", p)) for m, p in covered}
    assert routes == normalised
