"""Per-token rate limit: over the configured rate a token gets 429 with Retry-After; other tokens
are unaffected."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from hub.web.auth_mw import RateLimiter
from tests.web.world import World, call


def test_bucket_refills_over_time() -> None:
    now = [0.0]
    limiter = RateLimiter(60, clock=lambda: now[0])
    assert all(limiter.take("a") == 0 for _ in range(60))
    assert limiter.take("a") > 0
    assert limiter.take("b") == 0
    now[0] += 1.0
    assert limiter.take("a") == 0


async def test_429_with_retry_after(settings_data: dict[str, dict[str, object]],
                                    client: TestClient, world: World) -> None:
    assert settings_data["security"] == {"api_rate_per_minute": 3}
    statuses = [(await call(client, "GET", "/api/v1/queues", world.tokens["agent"]))[0]
                for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    status, body, headers = await call(client, "GET", "/api/v1/queues", world.tokens["agent"])
    assert status == 429 and body["error"]["code"] == "rate_limited"
    assert int(headers["Retry-After"]) >= 1
    assert (await call(client, "GET", "/api/v1/queues", world.tokens["admin"]))[0] == 200
