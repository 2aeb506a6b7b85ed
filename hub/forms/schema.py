"""Pydantic models of a form file, `routing_rules/forms/{form_id}.toml`.

Unknown keys are errors (`extra="forbid"`), as in every rule file. Checks that need the rest of
the rule folder (queues, languages) are the loader's (hub.forms.loader).

    title = { en = "Report a pothole", es = "Avisar de un bache" }
    description = { en = "...", es = "..." }
    queue = "roads"            # the default queue of its submissions
    contact = "either"         # email | phone | either: what the citizen must give
    [[field]]
    id = "where"  type = "location"  label = { en = "...", es = "..." }  required = true
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from hub.routing.schema import Strict

FieldType = Literal[
    "text", "textarea", "email", "phone", "choice", "multi_choice", "date", "address",
    "location", "file",
]
CONTACT_KEYS = ("name", "email", "phone")  # built-in contact fields: no form field may use them
DEFAULT_MAX_LENGTH = {"text": 200, "textarea": 5000, "address": 300, "email": 320, "phone": 32}
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_TYPES = ("image/jpeg", "image/png", "image/webp", "image/heic", "application/pdf")
Text = dict[str, str]  # language code -> text
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|MB)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {None: 1, "b": 1, "kb": 1024, "mb": 1024 * 1024}


def parse_size(value: int | str) -> int:
    """5_000_000, "500KB" or "5MB" -> bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        m = _SIZE.match(str(value))
        if not m:
            raise ValueError(f'bad size {value!r}: use e.g. "5MB" or "500KB"')
        size = int(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()]
    if size <= 0:
        raise ValueError("a size must be positive")
    return size


class Choice(Strict):
    value: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    label: Text


class FormField(Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    type: FieldType
    label: Text
    hint: Text = Field(default_factory=dict)
    required: bool = False
    public: bool = False  # shown in Open311's public request list (a location, say)
    max_length: int | None = Field(default=None, gt=0)
    choices: list[Choice] = Field(default_factory=list)
    max_size: int | str = DEFAULT_MAX_BYTES  # per file
    max_files: int = Field(default=1, gt=0)
    content_types: list[str] = Field(default_factory=lambda: list(DEFAULT_TYPES))

    @field_validator("max_size")
    @classmethod
    def _size(cls, value: int | str) -> int:
        return parse_size(value)

    @model_validator(mode="after")
    def _by_type(self) -> FormField:
        if self.type in ("choice", "multi_choice") and not self.choices:
            raise ValueError(f"a {self.type} field needs `choices`")
        if self.choices and self.type not in ("choice", "multi_choice"):
            raise ValueError(f"`choices` only fit choice and multi_choice fields, not {self.type}")
        if self.id in (*CONTACT_KEYS, "id"):
            raise ValueError(f"field id {self.id!r} is reserved (contact details, `form.id`)")
        return self

    @property
    def limit(self) -> int | None:
        """The longest text this field takes (None: not a text field)."""
        return self.max_length or DEFAULT_MAX_LENGTH.get(self.type)

    @property
    def bytes_limit(self) -> int:
        return parse_size(self.max_size)

    def choice_values(self) -> list[str]:
        return [c.value for c in self.choices]


class Form(Strict):
    id: str = ""  # the file's stem, set by the loader
    title: Text
    description: Text = Field(default_factory=dict)
    queue: str
    contact: Literal["email", "phone", "either"] = "either"
    group: str = ""  # Open311's service group
    keywords: list[str] = Field(default_factory=list)
    order: int = 1000  # listing order (portal, Open311 services)
    field: list[FormField] = Field(default_factory=list)

    def fields(self) -> dict[str, FormField]:
        return {f.id: f for f in self.field}

    def text(self, what: Text, language: str) -> str:
        """`what` in `language`, else English, else any language it has."""
        return what.get(language) or what.get("en") or next(iter(what.values()), "")

    def location_field(self) -> FormField | None:
        return next((f for f in self.field if f.type == "location"), None)
