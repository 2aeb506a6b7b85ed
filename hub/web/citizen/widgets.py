"""A form file's fields as the page shows them, in the citizen's language: each field's input
type, label, hint, error, kept value and the id its error-summary link points at; and the
posted body turned back into what hub.forms.validate reads.

Ids: a field's first input is `f-<field id>` (the first radio of a choice, the address of a
location), so the error summary links `#f-<field id>` and the browser focuses that input.
The contact inputs are `f-name`, `f-email`, `f-phone` (no form field may use those ids).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hub.forms.schema import Form, FormField
from hub.forms.validate import FieldError
from hub.web.citizen.body import Body
from hub.web.citizen.i18n import Language

INPUT_TYPES = {"text": "text", "address": "text", "email": "email", "phone": "tel",
               "date": "date"}
AUTOCOMPLETE = {"address": "street-address", "email": "email", "phone": "tel"}
OPTIONAL_WORDS = ("optional", "opcional")
LOCATION_PARTS = ("address", "lat", "long")  # posted as `<field id>.<part>`


@dataclass
class Widget:
    name: str  # the field id, the input's name
    kind: str  # input, textarea, choice, multi_choice, location, file
    label: str
    hint: str = ""
    error: str = ""
    value: Any = ""
    input_type: str = "text"
    autocomplete: str = ""
    choices: list[tuple[str, str]] = field(default_factory=list)
    accept: str = ""
    multiple: bool = False
    max_length: int | None = None

    @property
    def anchor(self) -> str:
        return f"f-{self.name}"

    @property
    def described_by(self) -> str:
        ids = [f"{self.anchor}-hint"] if self.hint else []
        return " ".join([*ids, f"{self.anchor}-error"] if self.error else ids)


def widgets(form: Form, language: Language, body: Body | None,
            errors: dict[str, str]) -> list[Widget]:
    return [_widget(form, fld, language, body, errors.get(fld.id, "")) for fld in form.field]


def _widget(form: Form, fld: FormField, language: Language, body: Body | None,
            error: str) -> Widget:
    text = language.code
    label = _optional(form.text(fld.label, text), fld.required, language)
    shown = Widget(fld.id, _kind(fld), label, form.text(fld.hint, text) if fld.hint else "",
                   error, input_type=INPUT_TYPES.get(fld.type, "text"),
                   autocomplete=AUTOCOMPLETE.get(fld.type, ""), max_length=fld.limit)
    shown.choices = [(c.value, form.text(c.label, text)) for c in fld.choices]
    if fld.type == "file":
        shown.accept = ",".join(fld.content_types)
        shown.multiple = fld.max_files > 1
    shown.value = _kept(fld, body)
    return shown


def _kind(fld: FormField) -> str:
    if fld.type in ("textarea", "choice", "multi_choice", "location", "file"):
        return fld.type
    return "input"


def _optional(label: str, required: bool, language: Language) -> str:
    if required or any(word in label.lower() for word in OPTIONAL_WORDS):
        return label
    return language._("{label} (optional)", label=label)


def _kept(fld: FormField, body: Body | None) -> Any:
    """What the citizen typed, to show again after a failed submit (files cannot be)."""
    if fld.type == "multi_choice":
        return body.all(fld.id) if body is not None else []
    if fld.type == "location":
        return {part: body.one(f"{fld.id}.{part}") if body is not None else ""
                for part in LOCATION_PARTS}
    return body.one(fld.id) if body is not None else ""


def contact_widgets(form: Form, language: Language, body: Body | None,
                    errors: dict[str, str]) -> list[Widget]:
    kept = body.one if body is not None else (lambda _name: "")
    email_required, phone_required = form.contact == "email", form.contact == "phone"
    return [
        Widget("name", "input", language._("Your name (optional)"), error=errors.get("name", ""),
               value=kept("name"), autocomplete="name", max_length=200),
        Widget("email", "input", _optional(language._("Email address"), email_required,
                                           language),
               error=errors.get("email", ""), value=kept("email"), input_type="email",
               autocomplete="email", max_length=320),
        Widget("phone", "input", _optional(language._("Phone number"), phone_required, language),
               hint=language._("For example +1 212 555 0123."), error=errors.get("phone", ""),
               value=kept("phone"), input_type="tel", autocomplete="tel", max_length=32),
    ]


def contact_hint(form: Form, language: Language) -> str:
    return {
        "email": language._("We will reply by email."),
        "phone": language._("We will reply by text message."),
    }.get(form.contact, language._("Give an email address or a phone number, or both, so we "
                                   "can reply. We reply by email when you give one."))


def submitted_data(form: Form, body: Body) -> dict[str, Any]:
    """The posted body as hub.forms.validate reads it."""
    data: dict[str, Any] = {key: body.one(key) for key in ("name", "email", "phone")}
    for fld in form.field:
        if fld.type == "multi_choice":
            data[fld.id] = body.all(fld.id)
        elif fld.type == "location":
            data[fld.id] = {part: body.one(f"{fld.id}.{part}") for part in LOCATION_PARTS}
        elif fld.type != "file":
            data[fld.id] = body.one(fld.id)
    return data


def error_messages(errors: list[FieldError], language: Language) -> dict[str, str]:
    """One message per field (its first), in the citizen's language."""
    found: dict[str, str] = {}
    for error in errors:
        found.setdefault(error.field, error.message(language.code))
    return found
