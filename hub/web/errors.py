"""JSON errors for the API: `{"error": {"code", "message"}}` with a fitting status, never a trace;
and the headers every response carries, whoever made it.

A body aiohttp cannot read (broken chunked framing, say) is a 400 logged as one line without a
traceback: only the hub's own failures are worth one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from aiohttp.web import RequestPayloadError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
JSON_PREFIXES = ("/api/", "/webhooks/", "/metrics", "/healthz")

_HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 408: "request_timeout", 409: "conflict", 413: "payload_too_large",
    415: "unsupported_media_type", 422: "unprocessable", 429: "rate_limited",
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def json_error(status: int, code: str, message: str,
               headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status,
                             headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return json_error(exc.status, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if request.path.startswith(JSON_PREFIXES):
            code = _HTTP_CODES.get(exc.status, "error")
            return json_error(exc.status, code, exc.reason, headers=_keep(exc))
        raise
    except (BadHttpMessage, RequestPayloadError) as exc:
        log.info("unreadable request %s %s: %r", request.method, request.path, str(exc)[:200])
        return json_error(400, "bad_request", "the request could not be read")
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_error(500, "internal", "internal error; it has been logged")


def _keep(exc: web.HTTPException) -> dict[str, str]:
    return {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after",
                                                                     "www-authenticate")}


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
API_HEADERS = {  # JSON is never a page: nothing may load from it, frame it or keep it
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}


async def secure_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every response, including the ones aiohttp makes (404, 405, 413, 500)
    that middlewares never see. A handler's own value for a header wins, except Server and the
    API's Cache-Control."""
    headers = response.headers
    headers["Server"] = "hub"  # never the Python and aiohttp versions
    api = request.path.startswith("/api/")
    for name, value in (SECURITY_HEADERS | API_HEADERS if api else SECURITY_HEADERS).items():
        headers.setdefault(name, value)
    if api:
        headers["Cache-Control"] = "no-store"  # personal data: not even a private cache
