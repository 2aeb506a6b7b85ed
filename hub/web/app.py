"""The aiohttp application: middlewares, operations endpoints, API and adapter webhooks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hub import metrics
from hub.web.errors import error_middleware, security_headers

if TYPE_CHECKING:
    from hub.app import Hub

HUB_KEY: web.AppKey[Hub] = web.AppKey("hub")


def create_app(hub: Hub) -> web.Application:
    app = web.Application(middlewares=[error_middleware, security_headers],
                          client_max_size=hub.settings.http.max_body_bytes)
    app[HUB_KEY] = hub
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_view)
    from hub.web.api import setup_api

    setup_api(app)
    for adapter in hub.adapters:
        routes = getattr(adapter, "routes", None)
        if routes is not None:
            app.router.add_routes(routes(hub.intake))
    return app


async def healthz(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    if await hub.db.ping():
        return web.json_response({"status": "ok", "database": "ok"})
    return web.json_response({"status": "unavailable", "database": "down"}, status=503)


async def metrics_view(request: web.Request) -> web.Response:
    from hub.workers.maintenance import refresh_outbox_gauge

    hub = request.app[HUB_KEY]
    await refresh_outbox_gauge(hub)
    body = generate_latest(metrics.REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
