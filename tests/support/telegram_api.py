"""A local stand-in of the Telegram Bot API, and Telegram's side of webhooks.

Serves `/bot<token>/<method>` for getMe, sendMessage, sendPhoto, sendDocument (multipart),
getUpdates (long poll over updates a test pushes), setWebhook, deleteWebhook, getWebhookInfo and
getFile, plus the file download path `/file/bot<token>/<file_path>`, answering in the Bot API's
shapes: `{"ok": true, "result": ...}` or `{"ok": false, "error_code", "description",
"parameters"}`. Parameters may come as query, form, multipart or JSON, as the real API accepts.

Point python-telegram-bot at it with `api.bot()`, or by hand:
`telegram.Bot(token, base_url=api.base_url, base_file_url=api.base_file_url)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import mimetypes
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web
from telegram import Bot

from tests.support.http_standin import (
    Fault,
    HttpStandIn,
    RecordedRequest,
    UploadedFile,
    WebhookResponse,
    recorded,
)

TOKEN = "7000000001:AAHstandInTokenForTheCivicHubTests01"
BLOCKED = (403, "Forbidden: bot was blocked by the user")
DEACTIVATED = (403, "Forbidden: user is deactivated")
CHAT_NOT_FOUND = (400, "Bad Request: chat not found")
MAX_TEXT = 4096
MAX_DOWNLOAD = 20 * 2**20  # getFile refuses bigger files


class BotError(Exception):
    """An error answer of the Bot API."""

    def __init__(self, code: int, description: str,
                 parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.code,
                                "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


@dataclass(frozen=True)
class StoredFile:
    file_id: str
    file_unique_id: str
    file_path: str
    content: bytes
    file_name: str | None
    mime_type: str | None

    def as_file(self) -> dict[str, Any]:
        return {"file_id": self.file_id, "file_unique_id": self.file_unique_id,
                "file_size": len(self.content), "file_path": self.file_path}


def _int(params: dict[str, Any], name: str, default: int | None = None) -> int | None:
    value = params.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise BotError(400, f"Bad Request: invalid {name} specified") from None


def _chat_for(chat_id: int) -> dict[str, Any]:
    if chat_id > 0:
        return {"id": chat_id, "first_name": "Citizen", "type": "private"}
    kind = "supergroup" if str(chat_id).startswith("-100") else "group"
    return {"id": chat_id, "title": "City hall group", "type": kind}


Method = Callable[[RecordedRequest], Awaitable[Any]]


class TelegramApi(HttpStandIn):
    """The stand-in. `pending` is the update queue, `sent` every message the bot sent."""

    def __init__(self, token: str = TOKEN, *, username: str = "cityhall_test_bot") -> None:
        self.token = token
        head = token.split(":", 1)[0]
        self.bot_user = {"id": int(head) if head.isdigit() else 1, "is_bot": True,
                         "first_name": "City Hall", "username": username,
                         "can_join_groups": True, "can_read_all_group_messages": False,
                         "supports_inline_queries": False}
        self.pending: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.served: list[list[int]] = []  # the update ids of each getUpdates answer, in order
        self.chats: dict[int, dict[str, Any]] = {}
        self.files: dict[str, StoredFile] = {}
        self.chat_errors: dict[int, tuple[int, str]] = {}
        self.webhook: dict[str, Any] | None = None
        self._update_ids = itertools.count(900000001)
        self._message_ids = itertools.count(1)
        self._file_numbers = itertools.count(1)
        self._changed = asyncio.Event()
        self._poll_generation = 0
        self._stopping = False
        self._methods: dict[str, Method] = {
            "getme": self._get_me, "sendmessage": self._send_message,
            "sendphoto": self._send_photo, "senddocument": self._send_document,
            "getupdates": self._get_updates, "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook, "getwebhookinfo": self._get_webhook_info,
            "getfile": self._get_file,
        }
        super().__init__()

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_route("*", "/bot{token}/{method}", self._dispatch)
        router.add_get("/file/bot{token}/{path:.+}", self._download)

    def error_body(self, status: int) -> Any:
        return BotError(status, HTTPStatus(status).phrase).body()

    async def before_stop(self) -> None:
        self._stopping = True
        self._changed.set()

    # -- client side ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """For `telegram.Bot(base_url=...)`, which appends the token."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        return f"{self.url}/file/bot"

    def bot(self, **kwargs: Any) -> Bot:
        """A real python-telegram-bot Bot bound to the stand-in (use `async with`)."""
        return Bot(self.token, base_url=self.base_url, base_file_url=self.base_file_url,
                   **kwargs)

    def calls(self, method: str) -> list[RecordedRequest]:
        """Recorded calls of one Bot API method (names are case-insensitive, as upstream)."""
        return [r for r in self.requests if r.path.startswith("/bot")
                and r.path.rsplit("/", 1)[-1].lower() == method.lower()]

    # -- switches ------------------------------------------------------------------------------

    def block(self, chat_id: int) -> None:
        """Sends to `chat_id` fail with 403 "Forbidden: bot was blocked by the user"."""
        self.chat_errors[chat_id] = BLOCKED

    def fail_chat(self, chat_id: int, status: int, description: str) -> None:
        self.chat_errors[chat_id] = (status, description)

    def unblock(self, chat_id: int) -> None:
        self.chat_errors.pop(chat_id, None)

    def rate_limit(self, retry_after: int, times: int = 1, *,
                   only: str | None = "sendMessage") -> Fault:
        """The next `times` matching calls get 429 with `parameters.retry_after`."""
        error = BotError(429, f"Too Many Requests: retry after {retry_after}",
                         {"retry_after": retry_after})
        return self.fail_next(times, 429, error.body(), only=only)

    # -- updates a test pushes -----------------------------------------------------------------

    def push_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queues an update (an `update_id` is given when missing) and wakes long polls."""
        update = dict(update)
        update.setdefault("update_id", next(self._update_ids))
        for key in ("message", "edited_message", "channel_post", "edited_channel_post"):
            if isinstance(chat := update.get(key, {}).get("chat"), dict):
                self.chats.setdefault(chat["id"], chat)
        self.pending.append(update)
        self._changed.set()
        return update

    def push_message(self, chat_id: int, text: str | None = None, *, first_name: str = "Ada",
                     username: str | None = None, **fields: Any) -> dict[str, Any]:
        """Queues a private-chat message update from user `chat_id`; `fields` join the message
        (e.g. photo=..., caption=...). A leading /command gets its bot_command entity."""
        user = {"id": chat_id, "is_bot": False, "first_name": first_name, "language_code": "en"}
        chat = {"id": chat_id, "first_name": first_name, "type": "private"}
        if username:
            user["username"] = chat["username"] = username
        message: dict[str, Any] = {"message_id": next(self._message_ids), "from": user,
                                   "chat": chat, "date": int(time.time())}
        if text is not None:
            message["text"] = text
            if text.startswith("/"):
                message["entities"] = [{"offset": 0, "length": len(text.split()[0]),
                                        "type": "bot_command"}]
        return self.push_update({"message": message | fields})

    def push_photo(self, chat_id: int, content: bytes, caption: str | None = None,
                   **kwargs: Any) -> dict[str, Any]:
        stored = self.add_file(content, kind="photos", file_name="photo.jpg")
        extra = {"caption": caption} if caption else {}
        return self.push_message(chat_id, photo=[self._photo_size(stored)], **extra, **kwargs)

    def push_document(self, chat_id: int, content: bytes, file_name: str,
                      mime_type: str | None = None, caption: str | None = None,
                      **kwargs: Any) -> dict[str, Any]:
        stored = self.add_file(content, file_name=file_name, mime_type=mime_type)
        extra = {"caption": caption} if caption else {}
        return self.push_message(chat_id, document=self._document(stored), **extra, **kwargs)

    def next_update_id(self) -> int:
        """An update id after every one given so far (Telegram's only grow), for an update a
        test builds by hand."""
        return next(self._update_ids)

    def photo_entry(self, stored: StoredFile) -> dict[str, Any]:
        """One `PhotoSize` of a stored file, for a message a test builds by hand."""
        return self._photo_size(stored)

    def document_entry(self, stored: StoredFile) -> dict[str, Any]:
        """The `Document` of a stored file, for a message a test builds by hand."""
        return self._document(stored)

    def add_file(self, content: bytes, *, kind: str = "documents", file_name: str | None = None,
                 mime_type: str | None = None) -> StoredFile:
        """Stores a file that getFile and the download path serve."""
        number = next(self._file_numbers)
        suffix = f".{file_name.rsplit('.', 1)[-1]}" if file_name and "." in file_name else ""
        stored = StoredFile(
            file_id=f"BQACAgIAAxkBAAI{secrets.token_urlsafe(24)}",
            file_unique_id=f"AgAD{secrets.token_urlsafe(8)}", file_path=f"{kind}/file_{number}{suffix}",
            content=content, file_name=file_name,
            mime_type=mime_type or (mimetypes.guess_type(file_name)[0] if file_name else None))
        self.files[stored.file_id] = stored
        return stored

    async def post_update(self, url: str, update: dict[str, Any], *,
                          secret_token: str | None = None) -> WebhookResponse:
        """POSTs one update as Telegram's webhook delivery does."""
        headers = {"Content-Type": "application/json"}
        if secret_token:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret_token
        async with self.session.post(url, data=json.dumps(update), headers=headers) as response:
            return WebhookResponse(response.status, await response.text(), response.headers.copy())

    async def deliver_pending(self) -> list[WebhookResponse]:
        """Delivers queued updates to the webhook set with setWebhook, in order; an update
        leaves the queue on a 2xx answer, as Telegram keeps retrying the others."""
        if self.webhook is None:
            raise RuntimeError("no webhook is set")
        answers = []
        for update in list(self.pending):
            answer = await self.post_update(self.webhook["url"], update,
                                            secret_token=self.webhook.get("secret_token"))
            answers.append(answer)
            if 200 <= answer.status < 300:
                self.pending.remove(update)
        return answers

    # -- HTTP ----------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.Response:
        method = self._methods.get(request.match_info["method"].lower())
        try:
            if request.match_info["token"] != self.token:
                raise BotError(401, "Unauthorized")
            if method is None:
                raise BotError(404, "Not Found")
            result = await method(recorded(request))
        except BotError as exc:
            return web.json_response(exc.body(), status=exc.code)
        return web.json_response({"ok": True, "result": result})

    async def _download(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        stored = next((f for f in self.files.values() if f.file_path == path), None)
        if request.match_info["token"] != self.token or stored is None:
            return web.json_response(BotError(404, "Not Found").body(), status=404)
        return web.Response(body=stored.content,
                            content_type=stored.mime_type or "application/octet-stream")

    # -- methods -------------------------------------------------------------------------------

    async def _get_me(self, rec: RecordedRequest) -> Any:
        return self.bot_user

    def _target_chat(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = _int(params, "chat_id")
        if chat_id is None:
            raise BotError(400, "Bad Request: chat_id is empty")
        if chat_id in self.chat_errors:
            raise BotError(*self.chat_errors[chat_id])
        return self.chats.get(chat_id) or _chat_for(chat_id)

    def _message(self, chat: dict[str, Any], **fields: Any) -> dict[str, Any]:
        message = {"message_id": next(self._message_ids), "from": self.bot_user, "chat": chat,
                   "date": int(time.time())} | {k: v for k, v in fields.items() if v}
        self.sent.append(message)
        return message

    async def _send_message(self, rec: RecordedRequest) -> Any:
        params = rec.params
        chat = self._target_chat(params)
        text = str(params.get("text") or "")
        if not text.strip():
            raise BotError(400, "Bad Request: message text is empty")
        if len(text) > MAX_TEXT:
            raise BotError(400, "Bad Request: message is too long")
        return self._message(chat, text=text)

    async def _send_photo(self, rec: RecordedRequest) -> Any:
        chat = self._target_chat(rec.params)
        stored = self._input_file(rec, "photo", kind="photos")
        return self._message(chat, photo=[self._photo_size(stored)],
                             caption=rec.params.get("caption"))

    async def _send_document(self, rec: RecordedRequest) -> Any:
        chat = self._target_chat(rec.params)
        stored = self._input_file(rec, "document", kind="documents")
        return self._message(chat, document=self._document(stored),
                             caption=rec.params.get("caption"))

    def _input_file(self, rec: RecordedRequest, name: str, *, kind: str) -> StoredFile:
        """An uploaded part, an `attach://` reference, a known file_id, or an HTTP URL."""
        value = str(rec.params.get(name) or "")
        upload: UploadedFile | None = rec.files.get(name)
        if value.startswith("attach://"):
            upload = rec.files.get(value.removeprefix("attach://"))
        if upload is not None:
            return self.add_file(upload.content, kind=kind, file_name=upload.filename,
                                 mime_type=upload.content_type)
        if value in self.files:
            return self.files[value]
        if value.startswith(("http://", "https://")):
            return self.add_file(b"", kind=kind, file_name=value.rsplit("/", 1)[-1])
        raise BotError(400, "Bad Request: wrong file identifier/HTTP URL specified")

    @staticmethod
    def _photo_size(stored: StoredFile) -> dict[str, Any]:
        return {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                "file_size": len(stored.content), "width": 800, "height": 600}

    @staticmethod
    def _document(stored: StoredFile) -> dict[str, Any]:
        document = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                    "file_size": len(stored.content), "file_name": stored.file_name,
                    "mime_type": stored.mime_type}
        return {k: v for k, v in document.items() if v is not None}

    async def _get_updates(self, rec: RecordedRequest) -> Any:
        if self.webhook is not None:
            raise BotError(409, "Conflict: can't use getUpdates method while webhook is active; "
                                "use deleteWebhook to delete the webhook first")
        params = rec.params
        offset = _int(params, "offset", 0) or 0
        limit = min(max(_int(params, "limit", 100) or 100, 1), 100)
        self._confirm(offset)
        # A newer long poll ends the one waiting, with 409, as Telegram does.
        self._poll_generation += 1
        generation = self._poll_generation
        self._changed.set()
        found = await self._wait_for_updates(offset, limit, float(params.get("timeout") or 0),
                                             generation)
        self.served.append([u["update_id"] for u in found])
        return found

    async def _wait_for_updates(self, offset: int, limit: int, timeout: float,
                                generation: int) -> list[dict[str, Any]]:
        deadline = asyncio.get_running_loop().time() + timeout
        while not (found := self._available(offset, limit)) and not self._stopping:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._changed.wait()
            if generation != self._poll_generation:
                raise BotError(409, "Conflict: terminated by other getUpdates request; make "
                                    "sure that only one bot instance is running")
        return found

    def _confirm(self, offset: int) -> None:
        """Updates below a positive offset are confirmed: Telegram forgets them."""
        if offset > 0:
            self.pending = [u for u in self.pending if u["update_id"] >= offset]

    def _available(self, offset: int, limit: int) -> list[dict[str, Any]]:
        if offset < 0:
            return self.pending[offset:][:limit]
        return [u for u in self.pending if u["update_id"] >= offset][:limit]

    async def _set_webhook(self, rec: RecordedRequest) -> Any:
        params = rec.params
        if not params.get("url"):
            return await self._delete_webhook(rec)
        if _truthy(params.get("drop_pending_updates")):
            self.pending.clear()
        allowed = params.get("allowed_updates")
        self.webhook = {"url": str(params["url"]), "secret_token": params.get("secret_token"),
                        "max_connections": _int(params, "max_connections", 40),
                        "allowed_updates": json.loads(allowed) if isinstance(allowed, str)
                        else allowed}
        return True

    async def _delete_webhook(self, rec: RecordedRequest) -> Any:
        if _truthy(rec.params.get("drop_pending_updates")):
            self.pending.clear()
        self.webhook = None
        return True

    async def _get_webhook_info(self, rec: RecordedRequest) -> Any:
        info: dict[str, Any] = {"url": "", "has_custom_certificate": False,
                                "pending_update_count": len(self.pending)}
        if self.webhook is not None:
            info |= {"url": self.webhook["url"], "ip_address": "127.0.0.1",
                     "max_connections": self.webhook["max_connections"]}
            if self.webhook["allowed_updates"] is not None:
                info["allowed_updates"] = self.webhook["allowed_updates"]
        return info

    async def _get_file(self, rec: RecordedRequest) -> Any:
        stored = self.files.get(str(rec.params.get("file_id") or ""))
        if stored is None:
            raise BotError(400, "Bad Request: invalid file_id")
        if len(stored.content) > MAX_DOWNLOAD:
            raise BotError(400, "Bad Request: file is too big")
        return stored.as_file()


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1")
