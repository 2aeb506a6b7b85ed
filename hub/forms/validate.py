"""Checking a citizen's submission against its form: clean values, or errors per field.

The web form pages and the Open311 endpoint both call `validate_submission`; each error names
its field and has a message in every language of `MESSAGES` (plain words, GOV.UK style), so a
page can show an error summary linked to the fields in the citizen's language.

Input: `data` maps a field id to a string (a list of strings for multi_choice; for a location
a mapping with `lat`, `long` and/or `address`), plus the contact keys `name`, `email`, `phone`;
`uploads` maps a file field's id to (filename, content_type, bytes) triples. A file's type is
judged by its content (hub.forms.uploads), never by its name or the browser's word.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import phonenumbers

from hub.forms.schema import Form, FormField, Text
from hub.forms.uploads import sniff
from hub.identities import InvalidAddress, normalize_email

MESSAGES: dict[str, Text] = {
    "required": {"en": "Answer “{label}”", "es": "Responda a «{label}»"},
    "enter": {"en": "Enter {label}", "es": "Indique {label}"},
    "too_long": {"en": "{label} must be {max} characters or fewer",
                 "es": "{label} debe tener como máximo {max} caracteres"},
    "not_a_choice": {"en": "Select one of the options for {label}",
                     "es": "Elija una de las opciones de {label}"},
    "bad_email": {"en": "Enter an email address in the right format, like name@example.com",
                  "es": "Escriba un correo electrónico válido, como nombre@ejemplo.com"},
    "bad_phone": {"en": "Enter a phone number, like +1 212 555 0123",
                  "es": "Escriba un número de teléfono, como +34 612 345 678"},
    "bad_date": {"en": "{label} must be a real date", "es": "{label} debe ser una fecha real"},
    "bad_location": {"en": "Give an address or a point on the map for {label}",
                     "es": "Indique una dirección o un punto en el mapa para {label}"},
    "too_large": {"en": "The file {file} must be smaller than {max}",
                  "es": "El archivo {file} debe ocupar menos de {max}"},
    "wrong_type": {"en": "The file {file} must be one of: {types}",
                   "es": "El archivo {file} debe ser de uno de estos tipos: {types}"},
    "too_many_files": {"en": "Upload at most {max} files for {label}",
                       "es": "Suba como máximo {max} archivos en {label}"},
    "contact_required": {"en": "Enter an email address or a phone number so we can reply",
                         "es": "Indique un correo electrónico o un teléfono para responderle"},
}
CONTACT_LABELS: dict[str, Text] = {
    "name": {"en": "your name", "es": "su nombre"},
    "email": {"en": "your email address", "es": "su correo electrónico"},
    "phone": {"en": "your phone number", "es": "su teléfono"},
}
NAME_MAX = 200


@dataclass(frozen=True, slots=True)
class Upload:
    filename: str
    content_type: str  # as sniffed once validated
    data: bytes


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str  # a form field id, or a contact key (name, email, phone)
    code: str  # a key of MESSAGES
    label: Text
    params: tuple[tuple[str, str], ...] = ()

    def message(self, language: str) -> str:
        template = MESSAGES[self.code]
        label = self.label.get(language) or self.label.get("en", self.field)
        text = template.get(language) or template["en"]
        return text.format(label=label, **dict(self.params))

    def messages(self) -> Text:
        return {lang: self.message(lang) for lang in MESSAGES[self.code]}


@dataclass(slots=True)
class CleanSubmission:
    form: Form
    values: dict[str, Any]  # field id -> str | list[str] | {"lat", "long", "address"}
    uploads: dict[str, list[Upload]]
    name: str | None = None
    email: str | None = None
    phone: str | None = None  # E.164


@dataclass(slots=True)
class Checked:
    clean: CleanSubmission | None
    errors: list[FieldError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


RawUploads = Mapping[str, Sequence[tuple[str, str, bytes]]]


def validate_submission(form: Form, data: Mapping[str, Any], uploads: RawUploads | None = None,
                        *, phone_region: str | None = "US") -> Checked:
    """Every field checked (all errors at once, in the form's order); clean values if none."""
    errors: list[FieldError] = []
    clean = CleanSubmission(form, {}, {})
    for fld in form.field:
        if fld.type == "file":
            files = check_files(fld, list((uploads or {}).get(fld.id, ())), errors)
            if files:
                clean.uploads[fld.id] = files
            continue
        value = _check_value(fld, data.get(fld.id), errors, phone_region)
        if value is not None:
            clean.values[fld.id] = value
    _check_contact(form, data, clean, errors, phone_region)
    return Checked(None if errors else clean, errors)


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _err(errors: list[FieldError], fld: FormField, code: str, **params: object) -> None:
    errors.append(FieldError(fld.id, code, fld.label,
                             tuple((k, str(v)) for k, v in params.items())))


def _check_value(fld: FormField, raw: Any, errors: list[FieldError],
                 region: str | None) -> Any:
    if fld.type == "location":
        return _check_location(fld, raw, errors)
    if fld.type == "multi_choice":
        picked = [_text(v) for v in (raw if isinstance(raw, list | tuple) else [raw])]
        picked = [v for v in picked if v]
        if not picked:
            _missing(fld, errors)
            return None
        if any(v not in fld.choice_values() for v in picked):
            _err(errors, fld, "not_a_choice")
            return None
        return list(dict.fromkeys(picked))
    text = _text(raw)
    if not text:
        _missing(fld, errors)
        return None
    return _check_text(fld, text, errors, region)


def _missing(fld: FormField, errors: list[FieldError]) -> None:
    if fld.required:
        _err(errors, fld, "required")


def _check_text(fld: FormField, text: str, errors: list[FieldError],
                region: str | None) -> str | None:
    limit = fld.limit
    if limit is not None and len(text) > limit:
        _err(errors, fld, "too_long", max=limit)
        return None
    if fld.type == "choice" and text not in fld.choice_values():
        _err(errors, fld, "not_a_choice")
        return None
    if fld.type in ("email", "phone"):
        address = _email(text) if fld.type == "email" else _phone(text, region)
        if address is None:
            _err(errors, fld, f"bad_{fld.type}")
        return address
    if fld.type == "date":
        try:
            return date.fromisoformat(text).isoformat()
        except ValueError:
            _err(errors, fld, "bad_date")
            return None
    return text


def _email(text: str) -> str | None:
    try:
        return normalize_email(text)
    except InvalidAddress:
        return None


def _phone(text: str, region: str | None) -> str | None:
    try:
        parsed = phonenumbers.parse(text, None if text.startswith("+") else region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _check_location(fld: FormField, raw: Any, errors: list[FieldError]) -> dict[str, Any] | None:
    """A point (lat and long) and/or a typed address; a bare string is an address."""
    spot = {"address": raw} if isinstance(raw, str) else dict(raw or {})
    address = _text(spot.get("address"))
    lat, long = _number(spot.get("lat")), _number(spot.get("long"))
    given_point = any(_text(str(spot.get(k) or "")) for k in ("lat", "long"))
    point_ok = lat is not None and long is not None and -90 <= lat <= 90 and -180 <= long <= 180
    if given_point and not point_ok:
        _err(errors, fld, "bad_location")
        return None
    if len(address) > (fld.limit or 300):
        _err(errors, fld, "too_long", max=fld.limit or 300)
        return None
    if not point_ok and not address:
        _missing(fld, errors)
        return None
    out: dict[str, Any] = {"address": address} if address else {}
    if point_ok:
        out |= {"lat": lat, "long": long}
    return out


def _number(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def check_files(fld: FormField, files: list[tuple[str, str, bytes]],
                errors: list[FieldError]) -> list[Upload]:
    """A file field's uploads, judged by content and size (the tracking page's photos too)."""
    files = [f for f in files if f[2]]  # an empty file input sends an empty part
    if not files:
        _missing(fld, errors)
        return []
    if len(files) > fld.max_files:
        _err(errors, fld, "too_many_files", max=fld.max_files)
        return []
    kept: list[Upload] = []
    for filename, _claimed, data in files:
        sniffed = sniff(data)
        if len(data) > fld.bytes_limit:
            _err(errors, fld, "too_large", file=filename, max=_size(fld.bytes_limit))
        elif sniffed is None or sniffed not in fld.content_types:
            _err(errors, fld, "wrong_type", file=filename, types=", ".join(fld.content_types))
        else:
            kept.append(Upload(filename, sniffed, data))
    return kept


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MB" if n >= 1024 * 1024 else f"{max(1, n // 1024)} KB"


def _check_contact(form: Form, data: Mapping[str, Any], clean: CleanSubmission,
                   errors: list[FieldError], region: str | None) -> None:
    email, phone, name = _text(data.get("email")), _text(data.get("phone")), _text(data.get("name"))
    if email:
        clean.email = _email(email)
        if clean.email is None:
            errors.append(FieldError("email", "bad_email", CONTACT_LABELS["email"]))
    if phone:
        clean.phone = _phone(phone, region)
        if clean.phone is None:
            errors.append(FieldError("phone", "bad_phone", CONTACT_LABELS["phone"]))
    if len(name) > NAME_MAX:
        errors.append(FieldError("name", "too_long", CONTACT_LABELS["name"],
                                 (("max", str(NAME_MAX)),)))
    clean.name = name[:NAME_MAX] or None
    wanted = ("email", "phone") if form.contact == "either" else (form.contact,)
    if not any(data.get(key) for key in wanted):
        if form.contact == "either":
            errors.append(FieldError("email", "contact_required", CONTACT_LABELS["email"]))
        else:
            errors.append(FieldError(form.contact, "enter", CONTACT_LABELS[form.contact]))
