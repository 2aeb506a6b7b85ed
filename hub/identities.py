"""Channel identities: the one normal form of an address per channel, so a citizen is one contact.

Email: lower-cased address. SMS: E.164. Telegram: the numeric chat id. Web chat: the visitor id.
Web form: the email or phone the citizen gave. Each channel's rule is one entry of `RULES`; an
adapter with the "identity" hook replaces its channel's entry when it is registered.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import phonenumbers

_EMAIL_RE = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
_TELEGRAM_RE = re.compile(r"^-?\d{1,20}$")
_VISITOR_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


class InvalidAddress(ValueError):
    pass


def normalize_phone(number: str, default_region: str | None = None) -> str:
    """E.164 (`+15551234567`); a national number needs `default_region` (e.g. "US")."""
    try:
        parsed = phonenumbers.parse(number, None if number.startswith("+") else default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidAddress(f"not a phone number: {exc}") from None
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidAddress("not a possible phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(address: str) -> str:
    value = address.strip().lower()
    if not _EMAIL_RE.match(value):
        raise InvalidAddress("not an email address")
    return value


def _pattern(regex: re.Pattern[str], what: str) -> Callable[[str, str | None], str]:
    def normalize(address: str, region: str | None) -> str:
        value = address.strip()
        if not regex.match(value):
            raise InvalidAddress(f"not a {what}")
        return value

    return normalize


def _webform(address: str, region: str | None) -> str:
    return normalize_email(address) if "@" in address else normalize_phone(address.strip(), region)


Rule = Callable[[str, str | None], str]
"""(address, phone region) -> the normal form; raises InvalidAddress."""
RULES: dict[str, Rule] = {
    "email": lambda address, region: normalize_email(address),
    "sms": lambda address, region: normalize_phone(address.strip(), region),
    "telegram": _pattern(_TELEGRAM_RE, "Telegram chat id"),
    "webchat": _pattern(_VISITOR_RE, "visitor id"),
    "webform": _webform,
}


def register(channel: str, normalize: Callable[[str], str]) -> None:
    """A channel's own rule (from its adapter's "identity" hook)."""
    def rule(address: str, region: str | None) -> str:
        try:
            return normalize(address)
        except InvalidAddress:
            raise
        except ValueError as exc:
            raise InvalidAddress(str(exc)) from None

    RULES[channel] = rule


def normalize_address(channel: str, address: str, *, phone_region: str | None = None) -> str:
    rule = RULES.get(channel)
    if rule is None:
        raise InvalidAddress(f"unknown channel {channel!r}")
    return rule(address, phone_region)
