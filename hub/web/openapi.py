"""The staff API's route table type and the OpenAPI 3.1 document built from it.

`hub.web.api` registers its handlers from a list of `Route`s, and `document(routes)` describes the
very same list with the pydantic models' JSON schemas, so the document cannot drift from the code.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from hub import __version__
from hub.web.schemas import ErrorOut

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REF = "#/components/schemas/{model}"
_PARAM = re.compile(r"\{(\w+)\}")

API_DESCRIPTION = """\
The staff API of the civic message hub. Authenticate with `Authorization: Bearer <token>`
(`hub token create EMAIL`). Roles: an *agent* sees and acts only on conversations in the queues they
belong to; anything else answers 404, exactly like an id that does not exist. A *supervisor* sees
and acts on every queue, reads the outbox and re-runs what was set aside (failed spool items, dead
outbox items); an *admin* also manages staff. Endpoints that need a role answer 403 to other
roles. Errors are `{"error": {"code", "message"}}`; malformed JSON and unknown fields are 400,
invalid values 422, too many requests 429 with `Retry-After`. Bodies are `application/json` (else
415), at most `[http] max_body_bytes` (else 413), nested at most 32 deep, with numbers of at most
64 characters (else 400). A reply with files is `multipart/form-data` instead.
Times are ISO 8601 UTC. List cursors are opaque: pass `next_cursor` back unchanged.
"""


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # OpenAPI style: /api/v1/conversations/{id}
    handler: Handler
    summary: str
    response: type[BaseModel] | None = None
    response_list: bool = False  # the answer is a JSON array of `response`
    status: int = 200
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    roles: tuple[str, ...] | None = None  # None: any authenticated staff
    public: bool = False
    description: str = ""
    media_type: str = "application/json"
    errors: tuple[int, ...] = field(default=(400, 401, 404, 422, 429))
    form: dict[str, Any] | None = None  # also takes multipart/form-data with this schema

    @property
    def aiohttp_path(self) -> str:
        return _PARAM.sub(lambda m: "{" + m.group(1) + r":\d{1,18}}", self.path)


def _models(routes: Sequence[Route]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    """Responses in serialization mode, request bodies in validation mode; each model once."""
    seen: dict[type[BaseModel], JsonSchemaMode] = {ErrorOut: "serialization"}
    for route in routes:
        if route.response is not None:
            seen[route.response] = "serialization"
        if route.body is not None:
            seen[route.body] = "validation"
    return list(seen.items())


def _schemas(routes: Sequence[Route]) -> dict[str, Any]:
    _, top = models_json_schema(_models(routes), ref_template=REF)
    return dict(top.get("$defs", {}))


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _unwrap_optional(prop: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent rather than null: drop the null alternative."""
    options = [o for o in prop.get("anyOf", []) if o.get("type") != "null"]
    if len(options) == 1:
        prop = {**{k: v for k, v in prop.items() if k not in ("anyOf", "default")},
                **options[0]}
    return prop


def _query_params(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF)
    required = set(schema.get("required", []))
    return [{"name": name, "in": "query", "required": name in required,
             "description": prop.pop("description", ""), "schema": _unwrap_optional(prop)}
            for name, prop in schema["properties"].items()]


def _responses(route: Route) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": route.summary}
    if route.response is not None:
        schema: dict[str, Any] = _ref(route.response)
        if route.response_list:
            schema = {"type": "array", "items": schema}
        answer["content"] = {route.media_type: {"schema": schema}}
    elif route.media_type != "application/json":
        answer["content"] = {route.media_type: {"schema": {"type": "string",
                                                           "format": "binary"}}}
    responses = {str(route.status): answer}
    errors = () if route.public else (*route.errors, *((403,) if route.roles else ()),
                                      *((413, 415) if route.body is not None else ()))
    for status in sorted(set(errors)):
        responses[str(status)] = {"description": "error",
                                  "content": {"application/json": {"schema": _ref(ErrorOut)}}}
    return responses


def _operation(route: Route) -> dict[str, Any]:
    roles = "any staff" if route.roles is None else ", ".join(route.roles)
    operation: dict[str, Any] = {
        "operationId": route.handler.__name__,
        "summary": route.summary,
        "description": route.description + ("" if route.public else f"\n\nRoles: {roles}."),
        "responses": _responses(route),
    }
    params = [{"name": name, "in": "path", "required": True,
               "schema": {"type": "integer", "minimum": 1}}
              for name in _PARAM.findall(route.path)]
    if route.query is not None:
        params += _query_params(route.query)
    if params:
        operation["parameters"] = params
    if route.body is not None:
        content: dict[str, Any] = {"application/json": {"schema": _ref(route.body)}}
        if route.form is not None:
            content["multipart/form-data"] = {"schema": route.form}
        operation["requestBody"] = {"required": bool(route.body.model_fields),
                                    "content": content}
    if route.public:
        operation["security"] = []
    return operation


def document(routes: Sequence[Route]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Civic hub staff API", "version": __version__,
                 "description": API_DESCRIPTION},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": _schemas(routes),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
