"""Open311 GeoReport v2 (JSON) at /open311/v2/: discovery, services, service definitions,
posting a service request (with an API key) and reading public requests.

A posted request goes through the forms' own path (hub.forms.validate, then hub.forms.submit),
so it becomes a `webform` conversation routed like a web form's. Errors are Open311's:
`[{"code": <status>, "description": "..."}]` with that HTTP status. `media_url` is stored as a
link for staff and never fetched here: fetching a URL a client names would let anyone make the
hub call into the city's internal network (SSRF).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from hub.apikeys import key_holder
from hub.forms import live_forms
from hub.forms.schema import Form
from hub.forms.submit import submit
from hub.forms.validate import FieldError, validate_submission
from hub.web.errors import Handler
from hub.web.keys import HUB_KEY
from hub.web.open311_data import (
    attributes,
    definition,
    place_field,
    public_request,
    requests_query,
    service,
)

PREFIX = "/open311/v2"
SPEC = "http://wiki.open311.org/GeoReport_v2"
DEFAULT_DAYS = 90  # GET requests without dates: the last 90 days, as the spec suggests
SERVICE_NOTICE = {"en": "Thank you. Keep the reference {ref} to follow your request.",
                  "es": "Gracias. Guarde la referencia {ref} para seguir su solicitud."}


class Open311Error(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status, self.description = status, description


def open311_error(status: int, *descriptions: str) -> web.Response:
    return web.json_response([{"code": status, "description": d} for d in descriptions],
                             status=status)


@web.middleware
async def open311_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error under /open311/v2, aiohttp's own 404 and 405 included, in Open311's form."""
    try:
        return await handler(request)
    except Open311Error as exc:
        return open311_error(exc.status, exc.description)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return open311_error(exc.status, exc.reason)


def setup_open311(app: web.Application) -> None:
    sub = web.Application(middlewares=[open311_errors])
    sub.router.add_get("/discovery.json", discovery)
    sub.router.add_get("/services.json", services)
    sub.router.add_get("/services/{service_code}.json", service_definition)
    sub.router.add_get("/requests.json", list_requests)
    sub.router.add_post("/requests.json", post_request)
    sub.router.add_get("/requests/{service_request_id}.json", one_request)
    app.add_subapp(PREFIX, sub)


def _forms(request: web.Request) -> dict[str, Form]:
    return live_forms(request.config_dict[HUB_KEY].rules)


def _language(request: web.Request) -> str:
    """`locale=es` (a common GeoReport extension), else Accept-Language, else English."""
    wanted = request.query.get("locale") or request.headers.get("Accept-Language") or ""
    code = wanted.strip()[:2].lower()
    return code if code in SERVICE_NOTICE else "en"


def _form(request: web.Request, code: str | None) -> Form:
    if not code:
        raise Open311Error(400, "service_code is required")
    form = _forms(request).get(code)
    if form is None:
        raise Open311Error(404, f"unknown service_code {code!r}")
    return form


async def discovery(request: web.Request) -> web.Response:
    hub = request.config_dict[HUB_KEY]
    base = str(hub.settings.hub.public_url).rstrip("/")
    loaded = hub.rules.loaded_at if hub.rules is not None else None
    changeset = (loaded or datetime.now(UTC)).isoformat(timespec="seconds")
    return web.json_response({
        "changeset": changeset,
        "contact": base,
        "key_service": "API keys are issued by the city's administrators (hub apikey create)",
        "endpoints": [{"specification": SPEC, "url": base + PREFIX, "changeset": changeset,
                       "type": "production", "formats": ["application/json"]}],
    })


async def services(request: web.Request) -> web.Response:
    language = _language(request)
    return web.json_response([service(f, language) for f in _forms(request).values()])


async def service_definition(request: web.Request) -> web.Response:
    form = _form(request, request.match_info["service_code"])
    return web.json_response(definition(form, _language(request)))


async def post_request(request: web.Request) -> web.Response:
    hub = request.config_dict[HUB_KEY]
    params = await request.post()
    key_name = await _client(request, str(params.get("api_key") or ""))
    form = _form(request, str(params.get("service_code") or ""))
    data, extra = _submission(form, params)
    checked = validate_submission(form, data, phone_region=_phone_region(request))
    if checked.clean is None:
        raise Open311Error(400, described(checked.errors))
    language = _language(request)
    extra["open311"] = {"client": key_name}
    accepted = await submit(hub.intake, checked.clean, token=_token(key_name, params),
                            language=language, extra_meta=extra)
    notice = SERVICE_NOTICE[language].format(ref=accepted.reference)
    return web.json_response([{"service_request_id": accepted.reference,
                               "service_notice": notice, "account_id": None}])


def described(errors: list[FieldError]) -> str:
    return "; ".join(f"{_param(e.field)}: {e.message('en')}" for e in errors)


async def _client(request: web.Request, key: str) -> str:
    """The name of the client whose live key this is; 403 otherwise."""
    if not key:
        raise Open311Error(403, "api_key is required to post a service request")
    async with request.config_dict[HUB_KEY].db.transaction() as session:
        holder = await key_holder(session, key)
        if holder is None:
            raise Open311Error(403, "invalid api_key")
        return holder.name


def _phone_region(request: web.Request) -> str:
    current = request.config_dict[HUB_KEY].rules
    ruleset = current.current if current is not None else None
    return ruleset.settings.phone_region if ruleset is not None else "US"


def _param(field: str) -> str:
    """The Open311 parameter an error is about."""
    if field in ("email", "phone", "description"):
        return field
    return f"attribute[{field}]"


def _submission(form: Form, params: MultiDictProxy[Any]) -> tuple[dict[str, Any],
                                                                   dict[str, Any]]:
    """Open311's parameters -> the form's submission dict, and meta kept besides."""
    text = {k: str(v).strip() for k, v in params.items() if isinstance(v, str)}
    data: dict[str, Any] = {
        "email": text.get("email", ""), "phone": text.get("phone", ""),
        "name": " ".join(p for p in (text.get("first_name"), text.get("last_name")) if p),
        "description": text.get("description", ""),
    }
    for fld in attributes(form):
        many = [str(v) for v in params.getall(f"attribute[{fld.id}][]", [])]
        data[fld.id] = many or [str(v) for v in params.getall(f"attribute[{fld.id}]", [])]
        if fld.type != "multi_choice":
            data[fld.id] = data[fld.id][0] if data[fld.id] else ""
    spot = {"lat": text.get("lat", ""), "long": text.get("long", ""),
            "address": text.get("address_string", "")}
    place, extra = place_field(form), dict[str, Any]()
    if place is not None:
        data[place.id] = spot if place.type == "location" else spot["address"]
    if place is None or place.type != "location":
        extra["location"] = {k: v for k, v in spot.items() if v}
    if "description" not in form.fields() and text.get("description"):
        extra["description"] = text["description"][:5000]  # no field for it: kept for staff
    if text.get("media_url"):
        extra["media_url"] = text["media_url"][:2000]  # a link for staff; never fetched (SSRF)
    return data, extra


def _token(client: str, params: MultiDictProxy[Any]) -> str:
    """The same request posted twice by the same client (a retry) is stored once."""
    body = sorted((k, str(v)) for k, v in params.items() if k != "api_key")
    return hashlib.sha256(repr((client, body)).encode()).hexdigest()[:40]


async def list_requests(request: web.Request) -> web.Response:
    q = request.query
    references = [r.strip() for r in q.get("service_request_id", "").split(",") if r.strip()]
    statuses = [s.strip() for s in q.get("status", "").split(",") if s.strip()]
    if any(s not in ("open", "closed") for s in statuses):
        raise Open311Error(400, "status must be open, closed or both (comma-separated)")
    end = _date(q.get("end_date"), "end_date")
    start = _date(q.get("start_date"), "start_date")
    if start is None and not references:
        start = (end or datetime.now(UTC)) - timedelta(days=DEFAULT_DAYS)
    query = requests_query(references=references, service_code=q.get("service_code"),
                           statuses=statuses, start=start, end=end)
    return web.json_response(await _read(request, query))


async def one_request(request: web.Request) -> web.Response:
    reference = request.match_info["service_request_id"]
    query = requests_query(references=[reference], service_code=None, statuses=[],
                           start=None, end=None)
    found = await _read(request, query)
    if not found:
        raise Open311Error(404, f"no service request {reference!r}")
    return web.json_response(found)


async def _read(request: web.Request, query: Any) -> list[dict[str, Any]]:
    forms, language = _forms(request), _language(request)
    async with request.config_dict[HUB_KEY].db.read() as session:
        rows = (await session.execute(query)).all()
    return [public_request(conv, pid, meta or {}, forms, language) for conv, pid, meta in rows]


def _date(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace(" ", "+"))
    except ValueError:
        raise Open311Error(400, f"{name} must be an ISO 8601 date-time") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
