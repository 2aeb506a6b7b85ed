"""What Open311 GeoReport v2 shows: forms as services, fields as attributes, conversations as
public service requests.

A service is a form (`service_code` = form id). The standard request parameters take the
form's own fields: `description` fills the field with that id, `lat`/`long`/`address_string`
the location field (or, lacking one, the first address field), `media_url` is kept as a link;
every other field is an attribute. A request is a `webform` conversation made from a form's
submission; only public fields are shown (never the citizen's words, name or addresses; a place
only when the form marks its location field `public`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, func, select

from hub.forms.schema import Form, FormField
from hub.forms.submit import PROVIDER_PREFIX, form_of_provider_id
from hub.model import Channel, ConversationStatus
from hub.storage.tables import Conversation, Message

DATATYPES = {
    "text": "string", "email": "string", "phone": "string", "address": "string",
    "textarea": "text", "choice": "singlevaluelist", "multi_choice": "multivaluelist",
    "date": "datetime",
}
CLOSED = (ConversationStatus.RESOLVED.value, ConversationStatus.CLOSED.value)
MAX_REQUESTS = 1000  # as the spec suggests for GET requests


def place_field(form: Form) -> FormField | None:
    """The field `lat`/`long`/`address_string` fill."""
    return form.location_field() or next((f for f in form.field if f.type == "address"), None)


def attributes(form: Form) -> list[FormField]:
    """The form's fields that are not standard request parameters."""
    place = place_field(form)
    return [f for f in form.field
            if f.id != "description" and f is not place and f.type != "file"]


def service(form: Form, language: str) -> dict[str, Any]:
    return {
        "service_code": form.id,
        "service_name": form.text(form.title, language),
        "description": form.text(form.description, language),
        "metadata": bool(attributes(form)),
        "type": "realtime",
        "keywords": ",".join(form.keywords),
        "group": form.group,
    }


def definition(form: Form, language: str) -> dict[str, Any]:
    return {"service_code": form.id,
            "attributes": [_attribute(form, f, i, language)
                           for i, f in enumerate(attributes(form), start=1)]}


def _attribute(form: Form, fld: FormField, order: int, language: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "variable": True,
        "code": fld.id,
        "datatype": DATATYPES[fld.type],
        "required": fld.required,
        "datatype_description": form.text(fld.hint, language) if fld.hint else "",
        "order": order,
        "description": form.text(fld.label, language),
    }
    if fld.choices:
        out["values"] = [{"key": c.value, "name": form.text(c.label, language)}
                         for c in fld.choices]
    return out


def status_of(conversation_status: str) -> str:
    return "closed" if conversation_status in CLOSED else "open"


def requests_query(*, references: list[str], service_code: str | None, statuses: list[str],
                   start: datetime | None, end: datetime | None) -> Select[Any]:
    """Webform conversations (not spam) with their first message's provider id and meta."""
    first = (select(func.min(Message.id)).where(Message.conversation_id == Conversation.id)
             .correlate(Conversation).scalar_subquery())
    query = (select(Conversation, Message.provider_id, Message.meta)
             .join(Message, Message.id == first)
             .where(Conversation.channel == Channel.WEBFORM.value,
                    Conversation.spam.is_(False),
                    Message.provider_id.startswith(PROVIDER_PREFIX, autoescape=True)))
    if references:  # the spec: a list of ids overrides every other filter
        return query.where(Conversation.reference.in_([r.upper() for r in references]))
    if service_code:
        query = query.where(Message.provider_id.startswith(
            f"{PROVIDER_PREFIX}{service_code}:", autoescape=True))
    if statuses and set(statuses) != {"open", "closed"}:
        closed = Conversation.status.in_(CLOSED)
        query = query.where(closed if statuses == ["closed"] else ~closed)
    if start is not None:
        query = query.where(Conversation.created_at >= start)
    if end is not None:
        query = query.where(Conversation.created_at <= end)
    return query.order_by(Conversation.created_at.desc()).limit(MAX_REQUESTS)


def public_request(conv: Conversation, provider_id: str | None, meta: dict[str, Any],
                   forms: dict[str, Form], language: str) -> dict[str, Any]:
    code = form_of_provider_id(provider_id) or ""
    form = forms.get(code)
    out: dict[str, Any] = {
        "service_request_id": conv.reference,
        "status": status_of(conv.status),
        "service_code": code,
        "service_name": form.text(form.title, language) if form else code,
        "requested_datetime": _when(conv.created_at),
        "updated_datetime": _when(conv.updated_at),
        "agency_responsible": conv.queue or "",
    }
    place = place_field(form) if form else None
    if place is not None and place.public:
        spot = meta.get("location") or {}
        out |= {"address": spot.get("address", ""), "lat": spot.get("lat"),
                "long": spot.get("long")}
    return out


def _when(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="seconds")
