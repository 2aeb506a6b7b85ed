"""The aiohttp application: middlewares, response headers, operations endpoints, API, the staff
workspace (/staff), the citizen pages (/, /forms, /track) and adapter webhooks.

`/metrics` is open to everyone unless `[http] metrics_allow` or `metrics_token` is set; then only
an allowed address or the token gets it (401 without credentials, 403 otherwise, 429 for an
address that keeps failing, like the API's bad tokens).
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hub import metrics
from hub.web.addresses import TRUSTED_PROXIES_KEY, Network, client_address, networks, within
from hub.web.api import setup_api
from hub.web.auth_mw import refused
from hub.web.citizen import setup_citizen
from hub.web.errors import error_middleware, json_error, secure_headers
from hub.web.keys import HUB_KEY
from hub.web.open311 import setup_open311
from hub.web.protocol_log import protocol_logger
from hub.web.staff import setup_staff

if TYPE_CHECKING:
    from hub.app import Hub

METRICS_ALLOW_KEY: web.AppKey[tuple[Network, ...]] = web.AppKey("metrics_allow", tuple)


def create_app(hub: Hub) -> web.Application:
    http = hub.settings.http
    app = web.Application(middlewares=[error_middleware],
                          client_max_size=http.max_body_bytes,
                          handler_args={"logger": protocol_logger()})
    app[HUB_KEY] = hub
    app[TRUSTED_PROXIES_KEY] = networks(http.trusted_proxies)
    app[METRICS_ALLOW_KEY] = networks(http.metrics_allow)
    app.on_response_prepare.append(secure_headers)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_view)
    setup_api(app)
    setup_staff(app)
    setup_open311(app)
    setup_citizen(app)
    for adapter in hub.adapters.with_hook("routes"):
        app.router.add_routes(adapter.routes(hub.context))
    return app


async def healthz(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    if await hub.db.ping():
        return web.json_response({"status": "ok", "database": "ok"})
    return web.json_response({"status": "unavailable", "database": "down"}, status=503)


async def metrics_view(request: web.Request) -> web.Response:
    from hub.workers.maintenance import refresh_outbox_gauge
    from hub.workprocess import merged_metrics

    refusal = _metrics_refusal(request)
    if refusal is not None:
        return refusal
    hub = request.app[HUB_KEY]
    await refresh_outbox_gauge(hub)
    body = generate_latest(metrics.REGISTRY)
    if hub.work_process is not None:
        body = merged_metrics(body, await hub.work_process.child_metrics())
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _metrics_refusal(request: web.Request) -> web.Response | None:
    """None when the caller may read /metrics, else the answer to give."""
    allowed = request.app[METRICS_ALLOW_KEY]
    token = request.app[HUB_KEY].settings.http.metrics_token.get_secret_value()
    if not allowed and not token:
        return None
    if within(client_address(request), allowed):
        return None
    header = request.headers.get("Authorization")
    if token and header is not None and _is_bearer(header, token):
        return None
    return refused(request) or (
        json_error(401, "unauthorized", "/metrics needs Authorization: Bearer <token>",
                   headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        if token and header is None
        else json_error(403, "forbidden", "/metrics is not open to this client"))


def _is_bearer(header: str, token: str) -> bool:
    scheme, _, given = header.partition(" ")
    # aiohttp decodes header bytes with surrogateescape: this gives the bytes sent back
    sent = given.strip().encode("utf-8", "surrogateescape")
    return scheme.lower() == "bearer" and hmac.compare_digest(sent, token.encode("utf-8"))
