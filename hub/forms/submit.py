"""A valid submission -> one `webform` InboundMessage -> the intake (a conversation).

Identities: a webform message has one sender, so the sender is the email when one was given,
else the phone; every address given is also handed over as `extra_identities` (email on
"email", phone on "sms", and the other one on "webform"), which the intake stores on the same
contact, so a later email or SMS from the citizen lands there. Dedupe: the provider id is
`form:<form_id>:<token>`, the token issued with the form page (or derived from an Open311
request), so a double submit is stored once; the prefix also names the service for Open311.
What rules see: `meta["form"] = {"id": ..., "fields": {...}}` (`when.form.<field>`).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from hub.forms.schema import Form
from hub.forms.validate import CleanSubmission
from hub.intake import Intake
from hub.model import Accepted, Channel, InboundAttachment, InboundMessage, utcnow

FORM_META = "form"  # meta key rules read: {"id": form id, "fields": {field id: value}}
LOCATION_META = "location"  # {"lat", "long", "address"}, when the form has a location
PROVIDER_PREFIX = "form:"
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{8,128}$")


class BadToken(ValueError):
    """The form token is missing or malformed: the submission cannot be deduplicated."""


def provider_id(form_id: str, token: str) -> str:
    if not TOKEN_RE.match(token):
        raise BadToken("a form token is 8 to 128 letters, digits, '-' or '_'")
    return f"{PROVIDER_PREFIX}{form_id}:{token}"


def form_of_provider_id(value: str | None) -> str | None:
    """The form id inside a provider id made by `provider_id` (None for anything else)."""
    if not value or not value.startswith(PROVIDER_PREFIX):
        return None
    return value[len(PROVIDER_PREFIX):].partition(":")[0] or None


def to_inbound(sub: CleanSubmission, *, token: str, language: str,
               extra_meta: dict[str, Any] | None = None,
               received_at: datetime | None = None) -> InboundMessage:
    form = sub.form
    sender = sub.email or sub.phone
    if sender is None:  # validate_submission requires one of them
        raise ValueError("a submission needs an email or a phone")
    meta: dict[str, Any] = {FORM_META: {"id": form.id, "fields": _meta_fields(sub)}}
    location = next((sub.values[f.id] for f in form.field if f.type == "location"
                     and f.id in sub.values), None)
    if location:
        meta[LOCATION_META] = location
    meta |= extra_meta or {}
    return InboundMessage(
        channel=Channel.WEBFORM.value,
        provider_id=provider_id(form.id, token),
        sender=sender,
        sender_name=sub.name,
        subject=form.text(form.title, language),
        text=summary(sub, language),
        attachments=tuple(InboundAttachment(u.filename, u.content_type, u.data)
                          for files in sub.uploads.values() for u in files),
        language=language,
        inbox_queue=form.queue,  # where it goes when no route rule of its own matches
        extra_identities=_identities(sub),
        meta=meta,
        received_at=received_at or utcnow(),
    )


async def submit(intake: Intake, sub: CleanSubmission, *, token: str, language: str,
                 extra_meta: dict[str, Any] | None = None) -> Accepted:
    """Store the submission as a conversation (once per token) and route it."""
    return await intake.accept(to_inbound(sub, token=token, language=language,
                                          extra_meta=extra_meta))


def _identities(sub: CleanSubmission) -> tuple[tuple[str, str], ...]:
    found: list[tuple[str, str]] = []
    if sub.email:
        found.append(("email", sub.email))
    if sub.phone:
        found.append(("sms", sub.phone))
        if sub.email:  # the sender is the email: the phone finds this contact on forms too
            found.append((Channel.WEBFORM.value, sub.phone))
    return tuple(found)


def _meta_fields(sub: CleanSubmission) -> dict[str, Any]:
    fields: dict[str, Any] = dict(sub.values)
    for fid, files in sub.uploads.items():
        fields[fid] = [u.filename for u in files]
    return fields


def summary(sub: CleanSubmission, language: str) -> str:
    """The message text staff read (and text rules match): one `Label: value` line per answer."""
    form = sub.form
    lines = []
    for fld in form.field:
        value = sub.values.get(fld.id)
        if fld.type == "file" and fld.id in sub.uploads:
            value = ", ".join(u.filename for u in sub.uploads[fld.id])
        if value in (None, "", []):
            continue
        lines.append(f"{form.text(fld.label, language)}: {_shown(fld.type, value, fld, form, language)}")
    return "\n".join(lines)


def _shown(kind: str, value: Any, fld: Any, form: Form, language: str) -> str:
    labels = {c.value: form.text(c.label, language) for c in fld.choices}
    if kind == "choice":
        return labels.get(value, str(value))
    if kind == "multi_choice":
        return ", ".join(labels.get(v, v) for v in value)
    if kind == "location":
        parts = [value.get("address", "")]
        if "lat" in value:
            parts.append(f"({value['lat']}, {value['long']})")
        return " ".join(p for p in parts if p)
    return str(value)
