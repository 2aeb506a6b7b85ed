"""Request bodies and query strings into validated models, with errors that name the field.

Malformed JSON, a body that is not an object and unknown fields are 400; a field of the wrong type
or value is 422. Messages name every offending field and never echo the submitted value.
"""

from __future__ import annotations

import json
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from hub.web.errors import ApiError

M = TypeVar("M", bound=BaseModel)


def _field(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(body)"


def validation_error(exc: ValidationError, where: str) -> ApiError:
    errors = exc.errors(include_input=False, include_url=False)
    unknown = [_field(e["loc"]) for e in errors if e["type"] == "extra_forbidden"]
    if unknown:
        names = ", ".join(repr(name) for name in unknown)
        return ApiError(400, "unknown_field", f"unknown {where} field(s): {names}")
    parts = [f"{_field(e['loc'])}: {e['msg']}" for e in errors[:10]]
    return ApiError(422, "invalid_field", f"invalid {where}: " + "; ".join(parts))


async def read_body(request: web.Request, model: type[M]) -> M:
    raw = await request.read()
    if not raw.strip():
        data: object = {}
    else:
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, "malformed_json",
                           f"request body is not valid JSON: {_reason(exc)}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "malformed_json", "request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, "body") from None


def _reason(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return "it is not UTF-8"


def read_query(request: web.Request, model: type[M]) -> M:
    repeated = sorted({k for k in request.query if len(request.query.getall(k)) > 1})
    if repeated:
        raise ApiError(400, "bad_request", f"query parameter given twice: {repeated[0]!r}")
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise validation_error(exc, "query") from None
