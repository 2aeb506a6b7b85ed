"""Channel identities: the one normal form of an address per channel, so a citizen is one contact.

Email: lower-cased address. SMS: E.164. Telegram: the numeric chat id. Web chat: the visitor id.
"""

from __future__ import annotations

import re

import phonenumbers

_EMAIL_RE = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
_TELEGRAM_RE = re.compile(r"^-?\d{1,20}$")
_VISITOR_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


class InvalidAddress(ValueError):
    pass


def normalize_phone(number: str, default_region: str | None = None) -> str:
    try:
        parsed = phonenumbers.parse(number, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidAddress(f"not a phone number: {exc}") from None
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidAddress("not a possible phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalize_address(channel: str, address: str, *, phone_region: str | None = None) -> str:
    value = address.strip()
    if channel == "email" or (channel == "webform" and "@" in value):
        value = value.lower()
        if not _EMAIL_RE.match(value):
            raise InvalidAddress("not an email address")
        return value
    if channel in ("sms", "webform"):
        return normalize_phone(value, phone_region)
    if channel == "telegram":
        if not _TELEGRAM_RE.match(value):
            raise InvalidAddress("not a Telegram chat id")
        return value
    if channel == "webchat":
        if not _VISITOR_RE.match(value):
            raise InvalidAddress("not a visitor id")
        return value
    raise InvalidAddress(f"unknown channel {channel!r}")


def shorten(address: str) -> str:
    """A form safe for traces and logs: enough to recognise, not enough to harvest."""
    if "@" in address:
        local, _, domain = address.partition("@")
        return f"{local[:1]}***@{domain}"
    if len(address) > 4:
        return "***" + address[-4:]
    return "***"
