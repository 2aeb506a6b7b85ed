"""A local stand-in of Twilio's Programmable Messaging REST API, and Twilio's side of webhooks.

Serves what the SMS channel uses: `POST /2010-04-01/Accounts/{sid}/Messages.json` (form-encoded,
HTTP basic auth with the account sid and auth token), `GET .../Messages/{sid}.json`, and MMS media:
`GET .../Messages/{sid}/Media/{media_sid}` answers 302 to a file URL that the stand-in also serves,
as Twilio redirects media to its CDN. It posts signed webhooks (inbound SMS/MMS, status
callbacks) with the `X-Twilio-Signature` that twilio's own RequestValidator computes.

Point the real client at it with `api.client()`, or by hand:
`client = twilio.rest.Client(sid, token); client.api.base_url = api.url`.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from aiohttp import web
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from tests.support.http_standin import Fault, HttpStandIn, WebhookResponse, recorded

ACCOUNT_SID = "AC" + "5ca1ab1e" * 4
AUTH_TOKEN = "7e57a17e" * 4
API_VERSION = "2010-04-01"

# Error codes a test is likely to want, with Twilio's HTTP status and message.
ERRORS: dict[int, tuple[int, str]] = {
    20003: (401, "Authenticate"),
    20404: (404, "The requested resource was not found"),
    20429: (429, "Too Many Requests"),
    20500: (500, "Internal Server Error"),
    20503: (503, "Service Unavailable"),
    21211: (400, "Invalid 'To' Phone Number"),
    21408: (400, "Permission to send an SMS has not been enabled for the region indicated by "
                 "the 'To' number"),
    21602: (400, "Message body is required."),
    21603: (400, "A 'From' phone number is required."),
    21604: (400, "A 'To' phone number is required."),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21614: (400, "'To' number is not a valid mobile number"),
}

_E164 = re.compile(r"^(whatsapp:)?\+[1-9]\d{6,14}$")


def error_body(code: int, message: str | None = None) -> dict[str, Any]:
    """Twilio's JSON error shape, which TwilioRestException reads `code` and `message` from."""
    status, default = ERRORS.get(code, (400, "Error"))
    return {"code": code, "message": message or default,
            "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}


def signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """X-Twilio-Signature of a form webhook, computed by twilio's own validator."""
    return str(RequestValidator(auth_token).compute_signature(url, params))


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


class _TwilioError(Exception):
    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Media:
    sid: str
    message_sid: str
    content: bytes
    content_type: str
    file_key: str


class TwilioApi(HttpStandIn):
    """The stand-in. `messages` holds every created message resource by sid."""

    def __init__(self, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN, *,
                 media_auth: bool = True) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        # Accounts may turn off basic auth for media; the contract says we always send it.
        self.media_auth = media_auth
        self.messages: dict[str, dict[str, Any]] = {}
        self.status_callbacks: dict[str, str] = {}
        self.media: dict[str, Media] = {}
        self.opted_out: set[str] = set()
        self._files: dict[str, Media] = {}
        super().__init__()

    def add_routes(self, router: web.UrlDispatcher) -> None:
        base = f"/{API_VERSION}/Accounts/{{account}}/Messages"
        router.add_post(base + ".json", self._create)
        router.add_get(base + "/{sid}.json", self._fetch)
        router.add_get(base + "/{sid}/Media/{media}", self._media)
        router.add_get("/media-files/{key}", self._media_file)

    def error_body(self, status: int) -> Any:
        code = {401: 20003, 404: 20404, 429: 20429, 503: 20503}.get(status, 20500)
        return error_body(code) | {"status": status}

    # -- client side ---------------------------------------------------------------------------

    @property
    def messages_url(self) -> str:
        return f"{self.url}/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"

    def client(self, *, async_http: bool = False) -> Client:
        """A real twilio Client bound to the stand-in (async_http: for `create_async`)."""
        http_client = AsyncTwilioHttpClient() if async_http else None
        client = Client(self.account_sid, self.auth_token, http_client=http_client)
        client.api.base_url = self.url  # the Api domain builds every URL from base_url
        return client

    # -- switches ------------------------------------------------------------------------------

    def reject_next(self, code: int, times: int = 1, *, message: str | None = None,
                    only: str = "Messages.json") -> Fault:
        """The next `times` sends fail with Twilio error `code` (e.g. 21211, 21610, 20429)."""
        body = error_body(code, message)
        return self.fail_next(times, int(body["status"]), body, only=only)

    def opt_out(self, number: str) -> None:
        """Every send to `number` fails with 21610, as after the recipient texted STOP."""
        self.opted_out.add(number)

    # -- handlers ------------------------------------------------------------------------------

    def _check_auth(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user = password = ""
        if scheme.lower() != "basic" or (user, password) != (self.account_sid, self.auth_token):
            raise _TwilioError(20003)
        if request.match_info["account"] != self.account_sid:
            raise _TwilioError(20404, f"The requested resource {request.path} was not found")

    async def _create(self, request: web.Request) -> web.Response:
        try:
            self._check_auth(request)
            resource = self._new_message(recorded(request).form, recorded(request).form_lists)
        except _TwilioError as exc:
            return self._error(exc)
        return web.json_response(resource, status=201)

    def _new_message(self, form: dict[str, str], lists: dict[str, list[str]]) -> dict[str, Any]:
        to, sender = form.get("To", ""), form.get("From") or form.get("MessagingServiceSid")
        media_urls = lists.get("MediaUrl", [])
        if not to:
            raise _TwilioError(21604)
        if not sender:
            raise _TwilioError(21603)
        if not form.get("Body") and not media_urls:
            raise _TwilioError(21602)
        if not _E164.match(to):
            raise _TwilioError(21211, f"Invalid 'To' Phone Number: {to}")
        if to in self.opted_out:
            raise _TwilioError(21610)
        resource = self._resource(_sid("MM" if media_urls else "SM"), form, len(media_urls))
        self.messages[resource["sid"]] = resource
        if callback := form.get("StatusCallback"):
            self.status_callbacks[resource["sid"]] = callback
        return resource

    def _resource(self, sid: str, form: dict[str, str], num_media: int) -> dict[str, Any]:
        now = format_datetime(datetime.now(UTC))
        body = form.get("Body", "")
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        return {
            "account_sid": self.account_sid, "api_version": API_VERSION, "body": body,
            "date_created": now, "date_sent": None, "date_updated": now,
            "direction": "outbound-api", "error_code": None, "error_message": None,
            "from": form.get("From"), "messaging_service_sid": form.get("MessagingServiceSid"),
            "num_media": str(num_media), "num_segments": str(max(1, -(-len(body) // 160))),
            "price": None, "price_unit": "USD", "sid": sid, "status": "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"}, "to": form["To"],
            "uri": f"{uri}.json",
        }

    async def _fetch(self, request: web.Request) -> web.Response:
        try:
            self._check_auth(request)
            resource = self.messages.get(request.match_info["sid"])
            if resource is None:
                raise _TwilioError(20404, f"The requested resource {request.path} was not found")
        except _TwilioError as exc:
            return self._error(exc)
        return web.json_response(resource)

    async def _media(self, request: web.Request) -> web.Response:
        try:
            if self.media_auth:
                self._check_auth(request)
            media = self.media.get(request.match_info["media"])
            if media is None or media.message_sid != request.match_info["sid"]:
                raise _TwilioError(20404, f"The requested resource {request.path} was not found")
        except _TwilioError as exc:
            return self._error(exc)
        location = f"{self.url}/media-files/{media.file_key}"
        return web.Response(status=302, headers={"Location": location})

    async def _media_file(self, request: web.Request) -> web.Response:
        media = self._files.get(request.match_info["key"])
        if media is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=media.content, content_type=media.content_type)

    def _error(self, exc: _TwilioError) -> web.Response:
        body = error_body(exc.code, exc.message)
        return web.json_response(body, status=int(body["status"]))

    # -- inbound side: what Twilio posts to the hub ---------------------------------------------

    def add_media(self, content: bytes, content_type: str = "image/jpeg", *,
                  message_sid: str | None = None) -> str:
        """Stores media of an inbound MMS and returns its Twilio media URL (which redirects)."""
        media = Media(_sid("ME"), message_sid or _sid("MM"), content, content_type,
                      secrets.token_hex(12))
        self.media[media.sid] = media
        self._files[media.file_key] = media
        return (f"{self.url}/{API_VERSION}/Accounts/{self.account_sid}/Messages/"
                f"{media.message_sid}/Media/{media.sid}")

    def inbound_params(self, sender: str, body: str = "", *, to: str = "+15005550006",
                       media: list[tuple[bytes, str]] | None = None,
                       message_sid: str | None = None) -> dict[str, str]:
        """The form fields of Twilio's inbound-message webhook; `media` items are stored here."""
        media = media or []
        sid = message_sid or _sid("MM" if media else "SM")
        params = {
            "ToCountry": "US", "ToState": "CA", "SmsMessageSid": sid, "NumMedia": str(len(media)),
            "ToCity": "", "FromZip": "", "SmsSid": sid, "FromState": "", "SmsStatus": "received",
            "FromCity": "", "Body": body, "FromCountry": "US", "To": to, "ToZip": "",
            "NumSegments": "1", "MessageSid": sid, "AccountSid": self.account_sid,
            "From": sender, "ApiVersion": API_VERSION,
        }
        for index, (content, content_type) in enumerate(media):
            params[f"MediaUrl{index}"] = self.add_media(content, content_type, message_sid=sid)
            params[f"MediaContentType{index}"] = content_type
        return params

    def status_params(self, message_sid: str, status: str, *,
                      error_code: int | None = None) -> dict[str, str]:
        """The form fields of a status callback for a message created here (or any sid)."""
        resource = self.messages.get(message_sid, {})
        params = {
            "SmsSid": message_sid, "SmsStatus": status, "MessageStatus": status,
            "To": resource.get("to") or "", "MessageSid": message_sid,
            "AccountSid": self.account_sid, "From": resource.get("from") or "",
            "ApiVersion": API_VERSION,
        }
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        return params

    async def post_signed(self, url: str, params: dict[str, str], *, sign_url: str | None = None,
                          signature_override: str | None = None) -> WebhookResponse:
        """POSTs `params` form-encoded to `url`, signed as Twilio signs for `sign_url` (the URL
        configured at Twilio, which behind a proxy differs from the one reached)."""
        sig = signature_override or signature(self.auth_token, sign_url or url, params)
        headers = {"X-Twilio-Signature": sig, "User-Agent": "TwilioProxy/1.1",
                   "I-Twilio-Idempotency-Token": secrets.token_hex(16)}
        async with self.session.post(url, data=params, headers=headers,
                                     allow_redirects=False) as response:
            return WebhookResponse(response.status, await response.text(), response.headers.copy())

    async def send_inbound(self, url: str, sender: str, body: str = "", *,
                           sign_url: str | None = None, **kwargs: Any) -> WebhookResponse:
        """Posts a signed inbound SMS/MMS webhook (kwargs: see `inbound_params`)."""
        return await self.post_signed(url, self.inbound_params(sender, body, **kwargs),
                                      sign_url=sign_url)

    async def send_status(self, message_sid: str, status: str, *, url: str | None = None,
                          error_code: int | None = None,
                          sign_url: str | None = None) -> WebhookResponse:
        """Moves a message to `status` and posts the signed callback to `url`, by default the
        StatusCallback the message was created with."""
        target = url or self.status_callbacks.get(message_sid)
        if target is None:
            raise LookupError(f"no StatusCallback known for {message_sid}; pass url=")
        if message_sid in self.messages:
            self.messages[message_sid].update(status=status, error_code=error_code)
        return await self.post_signed(target, self.status_params(
            message_sid, status, error_code=error_code), sign_url=sign_url)
