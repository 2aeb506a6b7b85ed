"""Request bodies and query strings into validated models, with errors that name the field.

A body that is not `application/json` is 415, one that takes longer than `[http]
body_timeout_seconds` to arrive 408. Malformed JSON, a body that is not an object and
unknown fields are 400, and so is JSON the hub refuses to parse: nested deeper than `MAX_DEPTH`, a
number longer than `MAX_NUMBER_CHARS` (Python's int parsing raises past 4,300 digits), NaN and
Infinity, unpaired surrogate escapes (no database can store them). A field of the wrong type or
value is 422. Messages name every offending field and never echo the submitted value. Whatever
the input, these helpers raise ApiError, never a 500.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from hub.web.errors import ApiError
from hub.web.keys import HUB_KEY

M = TypeVar("M", bound=BaseModel)
MAX_DEPTH = 32  # request models are flat; this is room to spare
MAX_NUMBER_CHARS = 64

# A JSON string, or an unterminated one up to the end (so that the search never restarts inside
# it: that would be quadratic). Possessive, so it never backtracks either.
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\Z)', re.DOTALL)
_SQUARE = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


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
    if request.body_exists and not _is_json(request.content_type):
        raise ApiError(415, "unsupported_media_type", "request body must be application/json")
    raw = await _read(request)
    data = parse_json(raw) if raw.strip() else {}
    if not isinstance(data, dict):
        raise ApiError(400, "malformed_json", "request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, "body") from None


async def _read(request: web.Request) -> bytes:
    """The whole body; a client that keeps it coming too slowly does not keep the handler."""
    seconds = request.app[HUB_KEY].settings.http.body_timeout_seconds
    try:
        async with asyncio.timeout(seconds):
            return await request.read()
    except TimeoutError:
        raise ApiError(408, "request_timeout",
                       f"the request body did not arrive within {seconds:g} seconds") from None


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json"))


def parse_json(raw: bytes) -> object:
    """Bytes -> JSON value within the limits above; every refusal is an ApiError 400."""
    if _deeper_than(raw, MAX_DEPTH):
        raise ApiError(400, "bad_request", f"request body nests deeper than {MAX_DEPTH} levels")
    try:
        data = json.loads(raw.decode("utf-8"), parse_int=_int, parse_float=_float,
                          parse_constant=_constant)
        if b"\\u" in raw:
            json.dumps(data, ensure_ascii=False).encode("utf-8")  # raises on lone surrogates
    except _Refused as exc:
        raise ApiError(400, "bad_request", str(exc)) from None
    except (UnicodeError, ValueError, RecursionError) as exc:
        raise ApiError(400, "malformed_json",
                       f"request body is not valid JSON: {_reason(exc)}") from None
    return data


class _Refused(Exception):
    """Valid JSON the hub will not parse (raised from inside the decoder's hooks)."""


def _short(text: str) -> str:
    if len(text) > MAX_NUMBER_CHARS:
        raise _Refused(f"a number in the request body is longer than {MAX_NUMBER_CHARS} "
                       "characters")
    return text


def _int(text: str) -> int:
    return int(_short(text))


def _float(text: str) -> float:
    value = float(_short(text))
    if math.isinf(value):  # 1e999: valid JSON, but no float holds it
        raise _Refused("a number in the request body is out of range")
    return value


def _constant(text: str) -> float:
    raise _Refused(f"{text} is not a JSON number")


def _deeper_than(raw: bytes, limit: int) -> bool:
    """Whether brackets outside strings nest deeper than `limit`, in C-speed passes.

    Each pass deletes the innermost `[]` pairs, so a balanced body is empty after as many passes
    as it is deep. Openers left without their closer count as depth too: the decoder would
    recurse into them before it noticed the missing closer.
    """
    skeleton = _STRING.sub(b"", raw).translate(_SQUARE, _NOT_BRACKETS)
    for _ in range(limit):
        shorter = skeleton.replace(b"[]", b"")
        if shorter == skeleton:
            break
        skeleton = shorter
    return b"[]" in skeleton or skeleton.count(b"[") > limit


def _reason(exc: BaseException) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, UnicodeDecodeError):
        return "it is not UTF-8"
    if isinstance(exc, UnicodeEncodeError):
        return "it contains an unpaired surrogate escape"
    return "it cannot be parsed"


def read_query(request: web.Request, model: type[M]) -> M:
    try:
        query = request.query
        repeated = sorted({k for k in query if len(query.getall(k)) > 1})
        if repeated:
            raise ApiError(400, "bad_request", f"query parameter given twice: {repeated[0]!r}")
        return model.model_validate(dict(query))
    except ValidationError as exc:
        raise validation_error(exc, "query") from None
    except (UnicodeError, ValueError):  # the query string itself could not be decoded
        raise ApiError(400, "bad_request", "the query string cannot be parsed") from None
