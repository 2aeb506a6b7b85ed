"""What every provider stand-in shares: a real aiohttp server on 127.0.0.1 (a free port, on the
test's own event loop), a record of every request, and faults a test switches on.

A subclass adds its routes and says what its provider's error bodies look like; see
`twilio_api.py` and `telegram_api.py`.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl

from aiohttp import ClientSession, ClientTimeout, web
from multidict import CIMultiDict

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class UploadedFile:
    """One file part of a multipart request."""

    filename: str | None
    content_type: str
    content: bytes


@dataclass
class RecordedRequest:
    """One request as the stand-in received it.

    `form` holds the last value of each form field (url-encoded or multipart), `form_lists` every
    value in order (Twilio repeats `MediaUrl`), `json` the parsed JSON body. `body` is the raw body,
    except for multipart requests, whose parts are in `form` and `files`. `at` is
    `time.monotonic()` on arrival, so a test can measure the gaps between tries; `status` is
    what the stand-in answered (None while the answer is pending or if the connection was dropped).
    """

    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]
    form: dict[str, str]
    form_lists: dict[str, list[str]]
    json: Any
    files: dict[str, UploadedFile]
    body: bytes
    at: float
    received_at: datetime
    status: int | None = None

    @property
    def params(self) -> dict[str, Any]:
        """Query, form and JSON object fields in one mapping (the Bot API accepts all three)."""
        merged: dict[str, Any] = dict(self.query)
        merged.update(self.form)
        if isinstance(self.json, dict):
            merged.update(self.json)
        return merged


@dataclass
class Fault:
    """What the next `times` matching requests get instead of (or before) the normal answer.

    `status` None answers normally after `delay`; `disconnect` drops the connection unanswered.
    `only` matches a substring of the path, so a fault aimed at sends is not eaten by a poller.
    """

    status: int | None = None
    body: Any = None
    delay: float = 0.0
    times: int = 1
    only: str | None = None
    disconnect: bool = False
    headers: dict[str, str] = field(default_factory=dict)

    def matches(self, path: str) -> bool:
        return self.times > 0 and (self.only is None or self.only in path)


_RECORDED = web.RequestKey("recorded", RecordedRequest)


@dataclass(frozen=True)
class WebhookResponse:
    """What the system under test answered to a webhook a stand-in posted."""

    status: int
    text: str
    headers: CIMultiDict[str]


def free_socket() -> socket.socket:
    """A listening-ready socket on a port the kernel picked (no race with other processes)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


async def _parse_body(request: web.Request) -> tuple[bytes, dict[str, list[str]], Any,
                                                      dict[str, UploadedFile]]:
    if request.content_type == "multipart/form-data":
        return (b"", *await _parse_multipart(request))
    body = await request.read()
    lists: dict[str, list[str]] = {}
    parsed: Any = None
    if request.content_type == "application/x-www-form-urlencoded":
        for key, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
            lists.setdefault(key, []).append(value)
    elif request.content_type == "application/json" and body:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
    return body, lists, parsed, {}


async def _parse_multipart(request: web.Request) -> tuple[dict[str, list[str]], Any,
                                                          dict[str, UploadedFile]]:
    lists: dict[str, list[str]] = {}
    files: dict[str, UploadedFile] = {}
    for key, value in (await request.post()).items():
        if isinstance(value, web.FileField):
            files[key] = UploadedFile(value.filename, value.content_type, value.file.read())
        else:
            lists.setdefault(key, []).append(str(value))
    return lists, None, files


class HttpStandIn:
    """Base of the provider stand-ins. Use as `async with TwilioApi() as api:` or start/stop."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._app = web.Application(middlewares=[self._middleware], client_max_size=64 * 2**20)
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._arrived = asyncio.Event()
        self._session: ClientSession | None = None
        self.add_routes(self._app.router)

    # -- to override ---------------------------------------------------------------------------

    def add_routes(self, router: web.UrlDispatcher) -> None:
        raise NotImplementedError

    def error_body(self, status: int) -> Any:
        """The provider's JSON body for a bare error status (a fault without a body)."""
        return {"status": status, "message": HTTPStatus(status).phrase}

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self) -> Self:
        # A short shutdown timeout: a test that ends during a slow answer must not wait for it.
        self._runner = web.AppRunner(self._app, shutdown_timeout=0.2, access_log=None)
        await self._runner.setup()
        sock = free_socket()
        self._port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock).start()
        self._session = ClientSession(timeout=ClientTimeout(total=30))
        return self

    async def stop(self) -> None:
        await self.before_stop()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def before_stop(self) -> None:
        """Hook to release handlers that wait (long polls) before the server shuts down."""

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """Base URL, no trailing slash."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def session(self) -> ClientSession:
        """The stand-in's own client, for the webhooks it posts to the system under test."""
        if self._session is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._session

    # -- faults --------------------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> Fault:
        self._faults.append(fault)
        return fault

    def fail_next(self, times: int = 1, status: int = 500, body: Any = None, *,
                  only: str | None = None, delay: float = 0.0,
                  headers: dict[str, str] | None = None) -> Fault:
        """The next `times` matching requests answer `status` (default body: the provider's)."""
        return self.add_fault(Fault(status, body, delay, times, only, headers=headers or {}))

    def slow_next(self, seconds: float, times: int = 1, *, only: str | None = None) -> Fault:
        """The next `times` matching requests are answered normally, `seconds` late."""
        return self.add_fault(Fault(None, None, seconds, times, only))

    def disconnect_next(self, times: int = 1, *, only: str | None = None) -> Fault:
        """The next `times` matching requests get their connection closed, no answer."""
        return self.add_fault(Fault(times=times, only=only, disconnect=True))

    def clear_faults(self) -> None:
        self._faults.clear()

    def _take_fault(self, path: str) -> Fault | None:
        for fault in self._faults:
            if fault.matches(path):
                fault.times -= 1
                if fault.times == 0:
                    self._faults.remove(fault)
                return fault
        return None

    # -- records -------------------------------------------------------------------------------

    def requests_to(self, path_part: str, method: str | None = None) -> list[RecordedRequest]:
        return [r for r in self.requests
                if path_part in r.path and (method is None or r.method == method)]

    async def wait_for_requests(self, count: int, path_part: str = "", *,
                                timeout: float = 10.0) -> list[RecordedRequest]:
        """Waits until `count` requests whose path contains `path_part` have arrived."""
        async with asyncio.timeout(timeout):
            while len(found := self.requests_to(path_part)) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return found

    async def _record(self, request: web.Request) -> RecordedRequest:
        body, lists, parsed, files = await _parse_body(request)
        recorded = RecordedRequest(
            method=request.method, path=request.path, query=dict(request.query),
            headers=CIMultiDict(request.headers), form={k: v[-1] for k, v in lists.items()},
            form_lists=lists, json=parsed, files=files, body=body, at=time.monotonic(),
            received_at=datetime.now(UTC))
        self.requests.append(recorded)
        self._arrived.set()
        return recorded

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        recorded = await self._record(request)
        request[_RECORDED] = recorded
        try:
            response = await self._answer(request, handler)
        except web.HTTPException as exc:  # aiohttp's own 404/405 and raised redirects
            recorded.status = exc.status
            raise
        recorded.status = response.status
        return response

    async def _answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        fault = self._take_fault(request.path)
        if fault is None:
            return await handler(request)
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.disconnect:
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError  # aiohttp ends the handler quietly; nothing is sent
        if fault.status is None:
            return await handler(request)
        body = fault.body if fault.body is not None else self.error_body(fault.status)
        return web.json_response(body, status=fault.status, headers=fault.headers)


def recorded(request: web.Request) -> RecordedRequest:
    """The record the middleware made of `request` (parsed body included)."""
    return request[_RECORDED]
