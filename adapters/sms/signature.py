"""Twilio's webhook signature: `X-Twilio-Signature`, checked with the twilio library's own
RequestValidator against the URL Twilio was given (`[hub] public_url` + the path, which behind
a proxy is not the address the hub listens on) and the form fields as received."""

from __future__ import annotations

from aiohttp import web
from multidict import MultiDict
from twilio.request_validator import (
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)

from hub import metrics

from .normalize import form_fields


def signed_url(public_url: str, request: web.Request) -> str:
    return public_url.rstrip("/") + request.path_qs


def verified_form(validator: RequestValidator, public_url: str, request: web.Request,
                  body: bytes) -> MultiDict[str] | None:
    """The form fields when the request carries a valid signature for them, else None (and
    the refusal counted in /metrics)."""
    signature = request.headers.get(SIGNATURE_HEADER, "")
    form: MultiDict[str] | None = None
    if signature:
        try:
            form = MultiDict(form_fields(body))
        except ValueError:  # not UTF-8: Twilio did not sign it
            form = None
    algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
    if form is None or not validator.validate(signed_url(public_url, request), form, signature,
                                              algorithm):
        metrics.WEBHOOK_REJECTED.labels("sms", request.path,
                                        "missing" if not signature else "invalid").inc()
        return None
    return form


def refused() -> web.Response:
    return web.Response(status=403, text="Forbidden: invalid X-Twilio-Signature\n")
