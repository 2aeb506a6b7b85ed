"""/healthz and /metrics as an operator's monitoring sees them."""

from __future__ import annotations

import re

from aiohttp.test_utils import TestClient

from hub.app import Hub
from hub.outbound import outbox_id_for, queue_outbound
from hub.storage.tables import Conversation
from tests.support.adapter import RecordingAdapter, inbound


def sample(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    assert match, f"{name}{labels} missing from /metrics"
    return float(match.group(1))


async def test_healthz_answers_200_when_the_database_answers(client: TestClient) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert (await response.json())["database"] == "ok"


async def test_healthz_answers_503_when_the_database_is_gone(client: TestClient,
                                                            hub: Hub) -> None:
    real = hub.db.ping

    async def down() -> bool:
        return False

    hub.db.ping = down  # type: ignore[method-assign]
    try:
        response = await client.get("/healthz")
    finally:
        hub.db.ping = real  # type: ignore[method-assign]
    assert response.status == 503


async def test_metrics_count_inbound_latency_outbox_and_failures(
        client: TestClient, hub: Hub, adapter: RecordingAdapter) -> None:
    before = await (await client.get("/metrics")).text()
    inbound_before = sample(before, "hub_inbound_messages_total", '{channel="sms"}') \
        if 'hub_inbound_messages_total{channel="sms"}' in before else 0.0
    accepted = await hub.intake.accept(inbound())
    await hub.intake.accept(inbound(provider_id="dup-1"))
    await hub.intake.accept(inbound(provider_id="dup-1"))
    adapter.fail_permanent()
    async with hub.db.transaction() as session:
        conversation = await session.get_one(Conversation, accepted.conversation_id)
        message = await queue_outbound(session, conversation, "reply")
        outbox_id = await outbox_id_for(session, message.id)
    hub.jobs.submit_delivery([outbox_id])
    await hub.jobs.drain()

    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = await response.text()
    assert sample(text, "hub_inbound_messages_total", '{channel="sms"}') == inbound_before + 2
    assert sample(text, "hub_inbound_duplicates_total", '{channel="sms"}') >= 1
    assert sample(text, "hub_intake_seconds_count") >= 3
    assert sample(text, "hub_outbox_items", '{state="dead"}') == 1
    assert sample(text, "hub_outbox_items", '{state="pending"}') == 0
    assert sample(text, "hub_delivery_failures_total",
                  '{channel="sms",kind="permanent"}') >= 1
