"""A channel written against adapter contract v2 alone (adapters/base.py): a webhook that spools
raw JSON, a picklable spool parser, an async send that records what it sends, a status webhook
that reports to the status sink, and the channel's own identity rule. It knows nothing of the
hub's storage, routing or web code: if it works end to end, the contract is enough."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web

from hub.adapters.base import AdapterContext, Capability, InputRefused
from hub.model import (
    DeliveryReport,
    InboundMessage,
    OutboundMessage,
    SendResult,
    SpoolItem,
    ThreadHints,
)

CHANNEL = "loop"
_ADDRESS = re.compile(r"^[a-z0-9-]{3,40}$")


@dataclass(frozen=True, slots=True)
class LoopbackParser:
    def __call__(self, payload: bytes, envelope: Mapping[str, Any],
                 received_at: datetime) -> InboundMessage:
        data = json.loads(payload)
        return InboundMessage(channel=CHANNEL, provider_id=str(data["id"]),
                              sender=str(data["from"]).lower(), text=str(data["text"]),
                              received_at=received_at, thread=ThreadHints(continue_latest=True))

    def raw_only(self, payload: bytes, envelope: Mapping[str, Any], received_at: datetime,
                 reason: str) -> InboundMessage:
        return InboundMessage(channel=CHANNEL, provider_id=str(envelope["key"]),
                              sender="unknown", text=payload.decode("utf-8", "replace"),
                              received_at=received_at, flags=("malformed", reason))


class LoopbackAdapter:
    name = CHANNEL
    capabilities = Capability.DELIVERY_STATUS
    hooks = frozenset({"spool", "routes", "identity"})
    spool_parser = LoopbackParser()

    def __init__(self) -> None:
        self.sent: list[OutboundMessage] = []

    def routes(self, ctx: AdapterContext) -> Iterable[web.RouteDef]:
        async def inbound(request: web.Request) -> web.Response:
            body = await request.read()
            key = str(json.loads(body)["id"])
            try:
                receipt = await ctx.spool.put(SpoolItem(channel=CHANNEL, dedupe_key=key,
                                                        payload=body, envelope={"key": key}))
            except InputRefused as exc:
                return web.Response(status=503, headers={"Retry-After": f"{exc.retry_after:.0f}"})
            return web.json_response({"duplicate": receipt.duplicate})

        async def status(request: web.Request) -> web.Response:
            data = await request.json()
            found = await ctx.status.report(CHANNEL, DeliveryReport(
                status=data["status"], refers_to=(data["provider_id"],), detail=data.get("why")))
            return web.json_response({"found": found})

        return [web.post("/webhooks/loop", inbound), web.post("/webhooks/loop/status", status)]

    async def send(self, msg: OutboundMessage) -> SendResult:
        self.sent.append(msg)
        return SendResult(provider_id=f"LOOP-{msg.message_id}")

    def normalize_identity(self, address: str) -> str:
        value = address.strip().lower()
        if not _ADDRESS.match(value):
            raise ValueError("not a loopback address")
        return value
