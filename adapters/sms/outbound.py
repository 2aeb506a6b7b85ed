"""Texts to citizens through the twilio library's REST client.

This module owns the call to Twilio (`Client.messages.create`, blocking, so it runs on a
thread), where it goes (`[twilio] api_base_url` when set, so tests talk to a local stand-in
over real HTTP), what a text looks like on a phone (flattened to plain text, its segment count
in GSM-7 or UCS-2), and how Twilio's answers map to the hub's retry policy: 429, 5xx, timeouts
and connection trouble are transient; other 4xx are permanent, with Twilio's error code and
message kept for staff (21211 invalid number, 21610 unsubscribed, 21614 not a mobile, ...).
"""

from __future__ import annotations

import logging
import threading

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from hub.adapters.base import DeliveryError, PermanentError, RecipientOptedOut, TransientError
from hub.config import Settings
from hub.model import DeliveryStatus, OutboundMessage, SendResult

from .text import segments, sms_text

log = logging.getLogger(__name__)

STATUS_PATH = "/webhooks/twilio/status"
TIMEOUT_SECONDS = 30.0
MAX_BODY_CHARS = 1600  # Twilio refuses longer bodies (error 21617)
OPTED_OUT = 21610  # Twilio: the recipient texted STOP (Twilio keeps its own opt-out list)

class TwilioSender:
    """Blocking sends through twilio's Client; one Client (and HTTP session) per thread."""

    def __init__(self, settings: Settings, public_url: str) -> None:
        twilio = settings.twilio
        self.account_sid = twilio.account_sid
        self.auth_token = twilio.auth_token.get_secret_value()
        self.from_number = twilio.from_number
        self.api_base_url = twilio.api_base_url.rstrip("/")
        self.status_callback = public_url.rstrip("/") + STATUS_PATH
        self.max_segments = settings.sms.max_segments
        self._local = threading.local()

    def client(self) -> Client:
        client: Client | None = getattr(self._local, "client", None)
        if client is None:
            client = Client(self.account_sid, self.auth_token,
                            http_client=TwilioHttpClient(timeout=TIMEOUT_SECONDS))
            if self.api_base_url:
                client.api.base_url = self.api_base_url
            self._local.client = client
        return client

    def too_long(self, text: str) -> str | None:
        """Why a flattened text is not sent (more than `[sms] max_segments`), or None."""
        count = segments(text)
        if count.count > self.max_segments or len(text) > MAX_BODY_CHARS:
            return (f"the text takes {count.count} SMS segments ({count.encoding}, "
                    f"{count.units} characters); at most {self.max_segments} are sent")
        return None

    def send(self, msg: OutboundMessage) -> SendResult:
        body = sms_text(msg.body, msg.html)
        if not body:
            raise PermanentError("the text is empty", code="empty")
        if refusal := self.too_long(body):
            raise PermanentError(refusal, code="too_long")
        sender = ({"messaging_service_sid": self.from_number}
                  if self.from_number.startswith("MG") else {"from_": self.from_number})
        try:
            resource = self.client().messages.create(
                to=msg.to, body=body, status_callback=self.status_callback, **sender)
        except (TwilioRestException, TwilioServiceException) as exc:
            raise classify(exc) from None
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise TransientError(f"Twilio unreachable: {type(exc).__name__}",
                                 code="connection") from None
        except (requests.RequestException, TwilioException) as exc:
            raise TransientError(f"Twilio request failed: {type(exc).__name__}: {exc}",
                                 code="connection") from None
        sid = str(resource.sid)
        log.info("sms sent, message %s, twilio sid %s, %s segment(s)", msg.message_id, sid,
                 segments(body).count)
        return SendResult(provider_id=sid, status=DeliveryStatus.SENT.value)


def classify(exc: TwilioRestException | TwilioServiceException) -> DeliveryError:
    """429, 5xx (and a missing status) are worth another try; other 4xx never work."""
    status = int(exc.status or 0)
    code = exc.code
    text = (exc.msg if isinstance(exc, TwilioRestException)
            else (exc.detail or exc.title))
    message = f"Twilio error {code}: {text}" if code else f"Twilio HTTP {status}: {text}"
    if code == OPTED_OUT:
        return RecipientOptedOut(message + " (the citizen opted out of texts)", code=str(code))
    if status == 429 or status >= 500 or status == 0 or code == 20429:
        return TransientError(message, code=str(code or status))
    return PermanentError(message, code=str(code or status))
