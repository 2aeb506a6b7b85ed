"""Twilio status callbacks for our outbound texts: `POST /webhooks/twilio/status`.

This module owns mapping Twilio's `MessageStatus` onto the hub's delivery status and handing
the report to the status sink, which moves a message forward only (a late "sent" after
"delivered" is kept as an event and changes nothing). Twilio's `ErrorCode` is kept as the
report's detail, for staff.
"""

from __future__ import annotations

from aiohttp import web
from twilio.request_validator import RequestValidator

from hub.adapters.base import AdapterContext, InputRefused
from hub.model import DeliveryReport, DeliveryStatus

from .normalize import CHANNEL
from .signature import refused, verified_form

STATUS_PATH = "/webhooks/twilio/status"
# Twilio's MessageStatus -> the hub's delivery status (unknown values are kept as events only).
STATUSES: dict[str, str] = {
    "accepted": DeliveryStatus.QUEUED.value,
    "scheduled": DeliveryStatus.QUEUED.value,
    "queued": DeliveryStatus.QUEUED.value,
    "sending": DeliveryStatus.SENDING.value,
    "sent": DeliveryStatus.SENT.value,
    "delivered": DeliveryStatus.DELIVERED.value,
    "read": DeliveryStatus.READ.value,
    "undelivered": DeliveryStatus.UNDELIVERED.value,
    "failed": DeliveryStatus.FAILED.value,
    "canceled": DeliveryStatus.FAILED.value,
}


def report_of(form: dict[str, str]) -> DeliveryReport | None:
    """The delivery report a callback carries, or None when it names no message."""
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    given = (form.get("MessageStatus") or form.get("SmsStatus") or "").strip().lower()
    if not sid or not given:
        return None
    error = form.get("ErrorCode") or ""
    detail = f"Twilio error {error}" if error else None
    if detail and form.get("ErrorMessage"):
        detail += f": {form['ErrorMessage']}"
    return DeliveryReport(status=STATUSES.get(given, given[:20]), refers_to=(sid[:64],),
                          detail=detail, recipient=form.get("To") or None)


def status_route(ctx: AdapterContext, validator: RequestValidator) -> web.RouteDef:
    async def status(request: web.Request) -> web.Response:
        body = await request.read()
        form = verified_form(validator, ctx.public_url, request, body)
        if form is None:
            return refused()
        report = report_of({key: form.getone(key) for key in form})
        if report is None:
            return web.Response(status=204)
        try:
            await ctx.status.report(CHANNEL, report)
        except InputRefused as exc:
            return web.Response(status=503, headers={"Retry-After": f"{exc.retry_after:.0f}"})
        return web.Response(status=204)

    return web.post(STATUS_PATH, status)
