"""The web chat protocol, version 1: the frames a widget and the hub exchange, checked here.

Every frame is a JSON object with `"v": 1` and `"type"`; unknown fields are ignored, an unknown
`type` or `v` is answered with an `error` of code `bad_request`. Client frames: `hello`,
`message`, `typing`, `seen`, `ping`. Server frames: `welcome`, `ack`, `message`, `typing`,
`joined`, `status`, `error`, `pong` (and `batch` on the HTTP fallback's long-poll). The agreed
text of the protocol is in the issue (#16); what this server does where the text leaves a
choice, or adds to it, is written here for the widget:

- `closed`: this server never refuses a message because the conversation was closed. A message
  after staff closed the conversation (or resolved it longer ago than `[hub]
  reopen_window_days`) starts a new conversation; its `ack` carries the new reference. A
  `status` frame tells a connected widget when staff change the conversation's status.
- `message` frames can repeat: history in `welcome` and a live push may both carry a message,
  and a message the visitor sent from another tab is pushed to this tab too (with its
  `client_id`; never to the connection that sent it). The widget keeps one message per `id`.
- `message.author` (outbound) is the staff member's display name; automatic messages (an
  acknowledgment) have no `author`.
- `error` for a `message` carries its `client_id`; `rate_limited` carries `retry_after`. A
  message refused with an error is not stored: the widget may send it again (same client_id).
- `error` `unavailable` (the database did not answer): nothing was stored; send it again.
- After a `hello` the widget should send `message` frames only; frames before `hello` other than
  `ping` get `bad_request`. A second `hello` on the same connection is answered with a fresh
  `welcome` (handy after `after` moved).
- The client_id is 1..64 characters of `A-Z a-z 0-9 . _ : -` (a UUID fits).
- Attachments (HTTP fallback only, `POST /chat/api/attachments`): an `ack` like a message's; the
  stored file's `url` (in `message.attachments`) is a capability link that needs no token.
- HTTP fallback errors: 400 `bad_request`, 403 (origin refused), 413 `too_long`, 429
  `rate_limited` (with a `Retry-After` header), 503 `unavailable`; each with the error frame.
- `POST /chat/api/typing` and `/chat/api/seen` answer `{"v": 1, "type": "ok"}`.
- `GET /chat/api/events?after=ID` answers at once with the messages after `after` when there
  are any, else waits up to 25 s for pushed frames; an empty `events` list means "poll again".
  An `after` that is not a number (empty, "undefined") means no history, only what comes next.
- `welcome.messages` holds at most the 500 newest messages after `after` (a longer chat shows
  its latest part); each with `id > after`, oldest first.
- Ids: an `ack`'s `id` and a `message`'s `id` are ids of one sequence, so `hub_chat_after` is
  the highest id the widget has seen (acks included).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

VERSION = 1


def N_(text: str) -> str:
    """Marks a text for the catalog (hub/locales); translated where it is shown. Kept here
    rather than imported from hub.web.citizen, which imports this package."""
    return text

CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
MAX_PROFILE_FIELD = 320  # characters of a name, an email or a phone
MAX_TOPIC = 100

# error codes
BAD_REQUEST = "bad_request"
TOO_LONG = "too_long"
RATE_LIMITED = "rate_limited"
TOO_MANY_CONNECTIONS = "too_many_connections"
CLOSED = "closed"
UNAVAILABLE = "unavailable"

ERROR_TEXTS = {
    BAD_REQUEST: N_("The chat could not read that message. Please try again."),
    TOO_LONG: N_("Your message is too long: please keep it under {max} characters."),
    RATE_LIMITED: N_("You are sending messages very quickly. Please wait {seconds} seconds "
                     "and try again."),
    TOO_MANY_CONNECTIONS: N_("Too many chats are open from your connection. Please close one "
                             "and try again."),
    CLOSED: N_("This conversation is closed. Your next message starts a new one."),
    UNAVAILABLE: N_("The chat is not available right now. Your message was not sent: please "
                    "try again in a moment."),
}
FILE_TOO_LARGE = N_("This file is too large: please send one of at most {max} MB.")
FILE_TYPE = N_("Only pictures (JPEG, PNG, GIF, WebP) and PDF documents can be sent.")


class ProtocolError(Exception):
    """A frame the server answers with an `error` frame (and, on HTTP, a 4xx)."""

    def __init__(self, code: str, *, client_id: str | None = None,
                 retry_after: int | None = None, text: str | None = None,
                 values: dict[str, Any] | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.client_id = client_id
        self.retry_after = retry_after
        self.text = text  # a msgid other than the code's own
        self.values = values or {}


@dataclass(frozen=True, slots=True)
class Hello:
    token: str | None = None
    after: int | None = None
    language: str | None = None


@dataclass(frozen=True, slots=True)
class Profile:
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    topic: str | None = None
    consent: bool = False
    leave_message: bool = False


@dataclass(frozen=True, slots=True)
class ChatMessage:
    client_id: str
    body: str
    profile: Profile | None = None


@dataclass(frozen=True, slots=True)
class Typing:
    on: bool


@dataclass(frozen=True, slots=True)
class Seen:
    id: int


@dataclass(frozen=True, slots=True)
class Ping:
    pass


ClientFrame = Hello | ChatMessage | Typing | Seen | Ping


def parse(data: Any) -> ClientFrame:
    """A decoded JSON value -> its frame; ProtocolError(bad_request) for anything else."""
    if not isinstance(data, dict) or data.get("v") != VERSION:
        raise ProtocolError(BAD_REQUEST)
    kind = data.get("type")
    client_id = data.get("client_id") if isinstance(data.get("client_id"), str) else None
    try:
        if kind == "hello":
            # A token or language the server cannot use is ignored, never refused: the
            # widget could not fix it anyway (a fresh visitor, the default language).
            return Hello(token=_lenient(data, "token", 200), after=_opt_id(data, "after"),
                         language=_lenient(data, "language", 16))
        if kind == "message":
            return parse_message(data)
        if kind == "typing":
            return Typing(on=_bool(data.get("on")))
        if kind == "seen":
            seen = _opt_id(data, "id")
            if seen is None:
                raise ValueError("id")
            return Seen(seen)
        if kind == "ping":
            return Ping()
    except (ValueError, TypeError):
        raise ProtocolError(BAD_REQUEST, client_id=client_id) from None
    raise ProtocolError(BAD_REQUEST, client_id=client_id)


def parse_message(data: dict[str, Any]) -> ChatMessage:
    client_id = data.get("client_id")
    if not isinstance(client_id, str) or not CLIENT_ID_RE.match(client_id):
        raise ValueError("client_id")
    body = data.get("body", "")
    if not isinstance(body, str):
        raise ValueError("body")
    profile = data.get("profile")
    return ChatMessage(client_id=client_id, body=body,
                       profile=parse_profile(profile) if profile is not None else None)


def parse_profile(data: Any) -> Profile:
    if not isinstance(data, dict):
        raise ValueError("profile")
    return Profile(name=_opt_str(data, "name", MAX_PROFILE_FIELD),
                   email=_opt_str(data, "email", MAX_PROFILE_FIELD),
                   phone=_opt_str(data, "phone", MAX_PROFILE_FIELD),
                   topic=_opt_str(data, "topic", MAX_TOPIC),
                   consent=_bool(data.get("consent", False)),
                   leave_message=_bool(data.get("leave_message", False)))


def _opt_str(data: dict[str, Any], key: str, limit: int) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise ValueError(key)
    return value.strip() or None


def _lenient(data: dict[str, Any], key: str, limit: int) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) and 0 < len(value) <= limit else None


def _opt_id(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise ValueError(key)
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("not a boolean")
    return value


# -- server frames ------------------------------------------------------------------------------


def frame(kind: str, **fields: Any) -> dict[str, Any]:
    return {"v": VERSION, "type": kind, **fields}


def iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def error_frame(error: ProtocolError, language: str) -> dict[str, Any]:
    from hub.web.citizen.i18n import translations  # at call time: it imports this package

    text = translations(language).gettext(error.text or ERROR_TEXTS[error.code])
    values = defaultdict(str, error.values)  # a value left out shows as nothing, never fails
    fields: dict[str, Any] = {"code": error.code, "message": text.format_map(values)}
    if error.client_id is not None:
        fields["client_id"] = error.client_id
    if error.retry_after is not None:
        fields["retry_after"] = error.retry_after
    return frame("error", **fields)


def conversation_ref(reference: str, status: str) -> dict[str, str]:
    return {"reference": reference, "status": status}


HTTP_STATUS = {BAD_REQUEST: 400, TOO_LONG: 413, RATE_LIMITED: 429, TOO_MANY_CONNECTIONS: 429,
               CLOSED: 409, UNAVAILABLE: 503}
