"""Hostile input over real HTTP: every one gets a 4xx with the JSON error shape, changes nothing
and writes no traceback to the log; every response carries the security headers; `/metrics` can
be closed to all but allowed addresses and a token.

Header bytes that are not UTF-8 cannot be sent with aiohttp's client, so those requests are
written by hand on a socket to the running test server.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, make_mocked_request

from hub.app import Hub
from hub.config import ConfigError, load_settings
from hub.web.addresses import TRUSTED_PROXIES_KEY, client_key, networks
from hub.web.parsing import MAX_DEPTH
from tests.web.world import World, call, snapshot

NOTES = "/api/v1/conversations/{conv}/notes"
RATE_3 = {"security": {"api_rate_per_minute": 3}}


@pytest.fixture
def extra_settings(request: pytest.FixtureRequest) -> dict[str, dict[str, Any]]:
    """Settings a test asks for with `indirect=True` parametrization; none by default."""
    return getattr(request, "param", {})


@pytest.fixture
def settings_data(settings_data: dict[str, dict[str, object]],
                  extra_settings: dict[str, dict[str, Any]]) -> dict[str, dict[str, object]]:
    for section, values in extra_settings.items():
        settings_data[section] = {**settings_data.get(section, {}), **values}
    return settings_data


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    for name in ("hub", "aiohttp"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def assert_no_traceback(log: pytest.LogCaptureFixture) -> None:
    for record in log.records:
        assert not record.exc_info, f"{record.name}: {record.getMessage()}"
        assert "Traceback" not in record.getMessage() + (record.exc_text or "")
    assert "Traceback" not in log.text


def assert_error(status: int, body: Any, expected: int | tuple[int, ...],
                 *codes: str) -> None:
    assert status in (expected if isinstance(expected, tuple) else (expected,)), body
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert not codes or body["error"]["code"] in codes, body


def assert_secure(headers: dict[str, str], api: bool) -> None:
    assert headers["Server"] == "hub"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    if api:
        assert headers["Cache-Control"] == "no-store"
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]


async def raw_request(client: TestClient, method: str, path: str,
                      headers: dict[str, bytes], body: bytes = b"",
                      send_all: bool = True) -> tuple[int, dict[str, str], Any]:
    """One HTTP/1.1 request written byte by byte; (status, headers, JSON or raw body)."""
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: hub.test", b"Connection: close"]
    lines += [name.encode() + b": " + value for name, value in headers.items()]
    if body or method == "POST":
        lines.append(b"Content-Length: %d" % len(body))
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + (body if send_all else body[:1]))
        await writer.drain()
        return await asyncio.wait_for(_response(reader), 20)
    finally:
        writer.close()


async def _response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], Any]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    headers = dict(line.split(": ", 1) for line in head[1:] if line)
    body = await reader.readexactly(int(headers.get("Content-Length", "0")))
    is_json = headers.get("Content-Type", "").startswith("application/json")
    return status, headers, json.loads(body) if is_json else body


# -- Authorization ----------------------------------------------------------------------------

BAD_AUTHORIZATION = {
    "not-utf8": b"Bearer hub_\xff\xfe\x80abc",
    "latin1": "Bearer hub_t\xe9l\xe9phone".encode("latin-1"),
    "not-latin1": "Bearer hub_łódź_東京".encode(),
    "garbage-scheme": b"\xc3\x28\xa0 \xe2\x82",
    "bearer-garbage": b"Bearer \x80" * 40,
    "two-tokens": b"Bearer hub_a hub_b",
}


@pytest.mark.parametrize("value", BAD_AUTHORIZATION.values(), ids=list(BAD_AUTHORIZATION))
async def test_a_bad_authorization_header_is_401(client: TestClient, world: World,
                                                 log: pytest.LogCaptureFixture,
                                                 value: bytes) -> None:
    status, headers, body = await raw_request(client, "GET", "/api/v1/queues",
                                              {"Authorization": value})
    assert_error(status, body, 401, "unauthorized")
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert_secure(headers, api=True)
    assert_no_traceback(log)


async def test_a_bad_token_on_a_write_changes_nothing(client: TestClient, world: World,
                                                      log: pytest.LogCaptureFixture) -> None:
    before = await snapshot(world.hub)
    status, _, body = await raw_request(
        client, "POST", NOTES.format(conv=world.conv),
        {"Authorization": BAD_AUTHORIZATION["not-utf8"], "Content-Type": b"application/json"},
        b'{"body": "x"}')
    assert_error(status, body, 401, "unauthorized")
    assert await snapshot(world.hub) == before
    assert_no_traceback(log)


@pytest.mark.parametrize("extra_settings", [RATE_3], indirect=True, ids=["rate-3"])
async def test_bad_tokens_are_rate_limited_per_address(client: TestClient, world: World,
                                                       log: pytest.LogCaptureFixture) -> None:
    statuses = [(await raw_request(client, "GET", "/api/v1/queues",
                                   {"Authorization": BAD_AUTHORIZATION["not-utf8"]}))[0],
                (await call(client, "GET", "/api/v1/queues", "hub_" + "x" * 43))[0],
                (await call(client, "GET", "/api/v1/queues"))[0]]
    assert statuses == [401, 401, 401]
    for token in (None, "hub_" + "y" * 43):
        status, body, headers = await call(client, "GET", "/api/v1/queues", token)
        assert_error(status, body, 429, "rate_limited")
        assert int(headers["Retry-After"]) >= 1
    status, headers, body = await raw_request(client, "GET", "/api/v1/queues",
                                              {"Authorization": BAD_AUTHORIZATION["latin1"]})
    assert_error(status, body, 429, "rate_limited")
    assert (await call(client, "GET", "/api/v1/queues", world.tokens["agent"]))[0] == 200
    assert_no_traceback(log)


# -- JSON bodies ------------------------------------------------------------------------------

N = 100_000
HOSTILE_BODIES = {
    "nested-arrays": b"[" * N + b"]" * N,
    "nested-objects": b'{"a":' * N + b"1" + b"}" * N,
    "nested-in-a-field": b'{"body": ' + b"[" * N + b"]" * N + b"}",
    "unclosed-arrays": b"[" * N,
    "one-too-deep": b'{"body": "x", "n": ' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}",
    "5000-digit-int": b'{"body": ' + b"7" * 5000 + b"}",
    "5000-digit-float": b'{"body": 0.' + b"7" * 5000 + b"}",
    "negative-5000-digits": b'{"body": "x", "n": -' + b"9" * 5000 + b"}",
    "float-overflow": b'{"body": 1e999}',
    "nan": b'{"body": NaN}',
    "infinity": b'{"body": -Infinity}',
    "lone-surrogate": b'{"body": "a\\ud800b"}',
    "not-utf8": b'{"body": "\xff\xfe"}',
    "unterminated-string": b'{"body": "' + b'\\"' * 50_000,
    "truncated": b'{"body": "hi"',
    "bare-string": b'"hi"',
}


@pytest.mark.parametrize("raw", HOSTILE_BODIES.values(), ids=list(HOSTILE_BODIES))
async def test_hostile_json_is_400(client: TestClient, world: World,
                                   log: pytest.LogCaptureFixture, raw: bytes) -> None:
    before = await snapshot(world.hub)
    status, body, headers = await call(client, "POST", NOTES.format(conv=world.conv),
                                       world.tokens["agent"], raw=raw)
    assert_error(status, body, 400, "bad_request", "malformed_json")
    assert_secure(headers, api=True)
    assert await snapshot(world.hub) == before
    assert_no_traceback(log)


async def test_brackets_inside_strings_do_not_count_as_nesting(client: TestClient, world: World,
                                                               log: pytest.LogCaptureFixture
                                                               ) -> None:
    text = '[{"\\"' * 1000
    status, body, _ = await call(client, "POST", NOTES.format(conv=world.conv),
                                 world.tokens["agent"], {"body": text})
    assert status == 201, body
    assert_no_traceback(log)


async def test_a_body_over_the_limit_is_413(client: TestClient, world: World, hub: Hub,
                                            log: pytest.LogCaptureFixture) -> None:
    raw = b'{"body": "' + b"x" * hub.settings.http.max_body_bytes + b'"}'
    status, body, headers = await call(client, "POST", NOTES.format(conv=world.conv),
                                       world.tokens["agent"], raw=raw)
    assert_error(status, body, 413, "payload_too_large")
    assert_secure(headers, api=True)
    assert_no_traceback(log)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/xml"])
async def test_json_sent_as_another_type_is_415(client: TestClient, world: World,
                                                log: pytest.LogCaptureFixture,
                                                content_type: str) -> None:
    before = await snapshot(world.hub)
    response = await client.post(NOTES.format(conv=world.conv), data=b'{"body": "hi"}',
                                 headers={"Authorization": f"Bearer {world.tokens['agent']}",
                                          "Content-Type": content_type})
    assert_error(response.status, await response.json(), 415, "unsupported_media_type")
    assert await snapshot(world.hub) == before
    assert_no_traceback(log)


@pytest.mark.parametrize("extra_settings", [{"http": {"body_timeout_seconds": 0.3}}],
                         indirect=True, ids=["timeout-0.3s"])
async def test_a_body_that_never_arrives_is_408(client: TestClient, world: World,
                                                log: pytest.LogCaptureFixture) -> None:
    status, _, body = await raw_request(
        client, "POST", NOTES.format(conv=world.conv),
        {"Authorization": f"Bearer {world.tokens['agent']}".encode(),
         "Content-Type": b"application/json"}, b'{"body": "slow"}', send_all=False)
    assert_error(status, body, 408, "request_timeout")
    assert_no_traceback(log)


@pytest.mark.parametrize("path", [
    "/api/v1/conversations?limit=" + "9" * 5000,
    "/api/v1/conversations?q=%ff%fe%ed%a0%80",
    "/api/v1/conversations?cursor=" + "A" * 5000,
    "/api/v1/conversations/" + "9" * 5000,
    "/api/v1/conversations/\u0661\u0662",
])
async def test_hostile_urls_are_answered_not_failed(client: TestClient, world: World,
                                                    log: pytest.LogCaptureFixture,
                                                    path: str) -> None:
    status, body, headers = await call(client, "GET", path, world.tokens["supervisor"])
    if status != 200:  # undecodable query bytes are U+FFFD: a search that finds nothing
        assert_error(status, body, (400, 404, 422))
    assert_secure(headers, api=True)
    assert_no_traceback(log)


async def test_http_that_aiohttp_cannot_parse_is_logged_without_a_traceback(
        client: TestClient, world: World, log: pytest.LogCaptureFixture) -> None:
    status, _, _ = await raw_request(client, "GET", "/api/v1/queues", {"X-Long": b"a" * 20_000})
    assert status == 400
    assert_no_traceback(log)


# -- headers on every response ----------------------------------------------------------------


@pytest.mark.parametrize(("headers", "body", "status"), [
    ({"Content-Type": b"\xff\xfe/\x80"}, b'{"body": "x"}', 415),
    ({"Content-Type": b"application/json; charset=\xff"}, b'{"body": "x"}', 201),
    ({"Content-Type": b"application/json", "Content-Encoding": b"gzip"}, b"not gzip", 400),
    ({"Content-Type": b"application/json", "Content-Encoding": b"gzip"},
     gzip.compress(b'{"body": "' + b"x" * 20_000_000 + b'"}'), 413),
], ids=["content-type-bytes", "charset-bytes", "bad-gzip", "gzip-bomb"])
async def test_hostile_body_headers(client: TestClient, world: World,
                                    log: pytest.LogCaptureFixture, headers: dict[str, bytes],
                                    body: bytes, status: int) -> None:
    headers["Authorization"] = f"Bearer {world.tokens['agent']}".encode()
    got, answer_headers, answer = await raw_request(client, "POST", NOTES.format(conv=world.conv),
                                                    headers, body)
    assert got == status, answer
    if status >= 400:
        assert_error(got, answer, status)
        assert_secure(answer_headers, api=True)
    assert_no_traceback(log)


@pytest.mark.parametrize(("method", "path", "status", "api"), [
    ("GET", "/no-such-page", 404, False),
    ("GET", "/api/v1/no-such-thing", 404, True),
    ("DELETE", "/api/v1/queues", 405, True),
    ("POST", "/healthz", 405, False),
    ("GET", "/api/v1/queues", 200, True),
    ("GET", "/api/v1/openapi.json", 200, True),
    ("GET", "/healthz", 200, False),
])
async def test_security_headers_on_every_response(client: TestClient, world: World,
                                                  method: str, path: str, status: int,
                                                  api: bool) -> None:
    got, _, headers = await call(client, method, path, world.tokens["admin"])
    assert got == status
    assert_secure(headers, api)
    assert "aiohttp" not in headers["Server"] and "Python" not in headers["Server"]


async def test_attachments_are_not_cached_nor_framed(client: TestClient, world: World) -> None:
    status, _, headers = await call(client, "GET", f"/api/v1/attachments/{world.attachment}",
                                    world.tokens["agent"])
    assert status == 200
    assert_secure(headers, api=True)
    assert "sandbox" in headers["Content-Security-Policy"]


async def test_an_unexpected_error_is_a_json_500_with_the_headers(client: TestClient,
                                                                  hub: Hub) -> None:
    async def broken() -> bool:
        raise RuntimeError("the hub's own bug")

    real, hub.db.ping = hub.db.ping, broken  # type: ignore[method-assign]
    try:
        status, body, headers = await call(client, "GET", "/healthz")
    finally:
        hub.db.ping = real  # type: ignore[method-assign]
    assert status == 500 and body["error"]["code"] == "internal"
    assert "Traceback" not in json.dumps(body) and "own bug" not in json.dumps(body)
    assert_secure(headers, api=False)


# -- /metrics ---------------------------------------------------------------------------------

TOKEN = "metrics-secret-0123456789"


@pytest.mark.parametrize(("extra_settings", "status"), [
    ({"http": {"metrics_allow": ["10.0.0.0/8", "2001:db8::/32"]}}, 403),
    ({"http": {"metrics_allow": ["127.0.0.1"]}}, 200),
    ({"http": {"metrics_allow": ["127.0.0.0/8"], "metrics_token": TOKEN}}, 200),
    ({"http": {"metrics_token": TOKEN}}, 401),
], indirect=["extra_settings"], ids=["other-network", "this-address", "network-and-token",
                                     "token-only"])
async def test_metrics_allow(client: TestClient, log: pytest.LogCaptureFixture,
                             status: int) -> None:
    got, body, headers = await call(client, "GET", "/metrics")
    assert got == status
    if status != 200:
        assert_error(got, body, status, "forbidden", "unauthorized")
    if status == 401:
        assert headers["WWW-Authenticate"].startswith("Bearer")
    assert_no_traceback(log)


@pytest.mark.parametrize("extra_settings", [{"http": {"metrics_allow": ["10.0.0.0/8"],
                                                      "metrics_token": TOKEN}}],
                         indirect=True, ids=["token"])
async def test_metrics_token(client: TestClient, log: pytest.LogCaptureFixture) -> None:
    response = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status == 200
    assert "hub_outbox_items" in await response.text()
    for value in (f"Bearer {TOKEN}x".encode(), f"Basic {TOKEN}".encode(), b"Bearer \xff\xfe"):
        status, _, body = await raw_request(client, "GET", "/metrics", {"Authorization": value})
        assert_error(status, body, 403, "forbidden")
    status, _, body = await raw_request(client, "GET", "/metrics", {})
    assert_error(status, body, 401, "unauthorized")
    assert_no_traceback(log)


@pytest.mark.parametrize(("extra_settings", "forwarded", "status"), [
    ({"http": {"metrics_allow": ["192.0.2.7"], "trusted_proxies": ["127.0.0.1"]}},
     "192.0.2.7", 200),
    ({"http": {"metrics_allow": ["192.0.2.7"], "trusted_proxies": ["127.0.0.1"]}},
     "192.0.2.7, 198.51.100.1", 403),
    ({"http": {"metrics_allow": ["192.0.2.7"]}}, "192.0.2.7", 403),
], indirect=["extra_settings"], ids=["via-trusted-proxy", "spoofed-hop", "untrusted-peer"])
async def test_metrics_behind_a_proxy(client: TestClient, forwarded: str, status: int) -> None:
    response = await client.get("/metrics", headers={"X-Forwarded-For": forwarded})
    assert response.status == status


@pytest.mark.parametrize("extra_settings", [{**RATE_3, "http": {"metrics_token": TOKEN}}],
                         indirect=True, ids=["rate-3"])
async def test_refused_metrics_requests_are_rate_limited(client: TestClient) -> None:
    statuses = [(await client.get("/metrics", headers={"Authorization": "Bearer wrong"})).status
                for _ in range(4)]
    assert statuses == [403, 403, 403, 429]


@pytest.mark.parametrize(("key", "value"), [
    ("metrics_allow", '["10.0.0.0/33"]'), ("metrics_allow", '["localhost"]'),
    ("trusted_proxies", '["10.0.0.1", "proxy.internal"]'),
])
def test_a_bad_network_is_a_config_error_naming_the_key(tmp_path: Path, key: str,
                                                        value: str) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(f"[http]\n{key} = {value}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert f"http.{key}" in str(caught.value)


def _request_from(peer: str, forwarded: str | None, trusted: tuple[str, ...]) -> web.Request:
    app = web.Application()
    app[TRUSTED_PROXIES_KEY] = networks(trusted)
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (peer, 1234) if name == "peername" else default)
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    return make_mocked_request("GET", "/", headers=headers, app=app, transport=transport)


@pytest.mark.parametrize(("peer", "forwarded", "trusted", "key"), [
    ("203.0.113.9", "192.0.2.1", (), "addr:203.0.113.9"),
    ("10.0.0.2", "192.0.2.1", ("10.0.0.0/8",), "addr:192.0.2.1"),
    ("10.0.0.2", "192.0.2.1, 10.0.0.3", ("10.0.0.0/8",), "addr:192.0.2.1"),
    ("10.0.0.2", "not-an-address", ("10.0.0.0/8",), "addr:10.0.0.2"),
    ("10.0.0.2", None, ("10.0.0.0/8",), "addr:10.0.0.2"),
    ("2001:db8:1:2:3:4:5:6", None, (), "addr:2001:db8:1:2::/64"),
    ("::ffff:198.51.100.4", None, (), "addr:198.51.100.4"),
])
def test_client_addresses_for_rate_limits(peer: str, forwarded: str | None,
                                          trusted: tuple[str, ...], key: str) -> None:
    assert client_key(_request_from(peer, forwarded, trusted)) == key
