"""Submissions through the real intake (SQLite and PostgreSQL): one conversation per form token,
the citizen's addresses as identities, routed by the form's queue and by `when.form.*` rules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hub.app import Hub
from hub.config import Settings
from hub.forms import live_forms
from hub.forms.submit import submit
from hub.forms.validate import CleanSubmission, validate_submission
from hub.storage.tables import Attachment, Conversation, Identity, Message
from tests.support.adapter import RecordingAdapter, inbound
from tests.unit.routing.conftest import write_rules
from tests.unit.routing.test_forms import HAZARD_RULE

SHIPPED = Path(__file__).resolve().parents[3] / "routing_rules"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
async def form_hub(settings_data: dict[str, dict[str, object]], tmp_path: Path,
                   adapter: RecordingAdapter) -> AsyncIterator[Hub]:
    pothole = (SHIPPED / "forms" / "pothole.toml").read_text()
    general = (SHIPPED / "forms" / "general_question.toml").read_text()
    rules = write_rules(tmp_path / "rules", {"forms/pothole.toml": pothole,
                                             "forms/general_question.toml": general,
                                             "route.toml": HAZARD_RULE})
    settings_data["routing"] = {"rules_dir": str(rules), "watch": False}
    hub = Hub(Settings.model_validate(settings_data), adapters=[adapter])
    await hub.prepare()
    yield hub
    await hub.stop()


def pothole(hub: Hub, hazard: str = "no", **contact: str) -> CleanSubmission:
    form = live_forms(hub.rules)["pothole"]
    checked = validate_submission(form, {"where": {"lat": "40.7", "long": "-74"},
                                         "hazard": hazard, **contact},
                                  {"photo": [("hole.png", "image/png", PNG)]})
    assert checked.clean is not None, checked.errors
    return checked.clean


async def count(hub: Hub, table: type) -> int:
    async with hub.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)


async def test_double_submit_is_stored_once(form_hub: Hub) -> None:
    sub = pothole(form_hub, email="jane@example.org")
    first = await submit(form_hub.intake, sub, token="tok-aaaaaaaa", language="en")
    again = await submit(form_hub.intake, sub, token="tok-aaaaaaaa", language="en")
    assert first.new_conversation and not first.duplicate
    assert again.duplicate and again.reference == first.reference
    assert await count(form_hub, Conversation) == 1
    assert await count(form_hub, Message) == 1 and await count(form_hub, Attachment) == 1
    other = await submit(form_hub.intake, sub, token="tok-bbbbbbbb", language="en")
    assert other.reference != first.reference  # a new token is a new request


async def test_routed_by_form_queue_and_form_field_rule(form_hub: Hub) -> None:
    calm = await submit(form_hub.intake, pothole(form_hub, email="a@example.org"),
                        token="tok-calm0001", language="en")
    urgent = await submit(form_hub.intake, pothole(form_hub, "yes", email="b@example.org"),
                          token="tok-urgent01", language="en")
    async with form_hub.db.read() as session:
        convs = {c.reference: c for c in await session.scalars(select(Conversation))}
        meta = (await session.scalars(select(Message.meta).where(
            Message.conversation_id == urgent.conversation_id))).one()
    assert convs[calm.reference].queue == "roads"  # no rule: the form's own queue
    assert convs[calm.reference].priority == "normal"
    assert convs[urgent.reference].queue == "roads"
    assert convs[urgent.reference].priority == "urgent"  # when.form.hazard = "yes"
    assert meta["form"]["id"] == "pothole" and meta["form"]["fields"]["hazard"] == "yes"
    assert meta["location"] == {"lat": 40.7, "long": -74.0}


async def test_email_and_phone_become_identities_of_one_contact(form_hub: Hub) -> None:
    sub = pothole(form_hub, email="Jane@Example.org", phone="+12125550123")
    accepted = await submit(form_hub.intake, sub, token="tok-ident001", language="en")
    async with form_hub.db.read() as session:
        contact_id = (await session.get_one(Conversation, accepted.conversation_id)).contact_id
        found = {(i.channel, i.address, i.contact_id) for i in await session.scalars(
            select(Identity))}
    assert found == {("webform", "jane@example.org", contact_id),
                     ("email", "jane@example.org", contact_id),
                     ("sms", "+12125550123", contact_id),
                     ("webform", "+12125550123", contact_id)}
    later_sms = await form_hub.intake.accept(inbound("+12125550123", "Any news?"))
    later_mail = await form_hub.intake.accept(inbound("jane@example.org", "Hello",
                                                      channel="email"))
    async with form_hub.db.read() as session:
        for acc in (later_sms, later_mail):
            conv = await session.get_one(Conversation, acc.conversation_id)
            assert conv.contact_id == contact_id


# What the citizen gave on the form -> where what we send goes: email first, else SMS.
ANSWERED_ON = [
    ({"email": "jane@example.org", "phone": "+14155550123"}, "email", "jane@example.org"),
    ({"phone": "+14155550123"}, "sms", "+14155550123")]


async def two_channel_hub(settings_data: dict[str, dict[str, object]], tmp_path: Path,
                          email: RecordingAdapter, sms: RecordingAdapter) -> Hub:
    """A form hub with email and SMS channels, to see where what is sent for a form goes."""
    pothole_form = (SHIPPED / "forms" / "pothole.toml").read_text()
    rules = write_rules(tmp_path / "rules", {"forms/pothole.toml": pothole_form})
    settings_data["routing"] = {"rules_dir": str(rules), "watch": False}
    hub = Hub(Settings.model_validate(settings_data), adapters=[email, sms])
    await hub.prepare()
    return hub


@pytest.fixture
async def answering_hub(settings_data: dict[str, dict[str, object]],
                        tmp_path: Path) -> AsyncIterator[tuple[Hub, RecordingAdapter,
                                                                RecordingAdapter]]:
    email, sms = RecordingAdapter(name="email"), RecordingAdapter(name="sms")
    hub = await two_channel_hub(settings_data, tmp_path, email, sms)
    yield hub, email, sms
    await hub.stop()


@pytest.mark.parametrize(("contact", "channel", "to"), ANSWERED_ON)
async def test_a_staff_answer_to_a_form_goes_to_the_address_the_citizen_gave(
        answering_hub: tuple[Hub, RecordingAdapter, RecordingAdapter], contact: dict[str, str],
        channel: str, to: str) -> None:
    from hub import service
    from hub.staff import add_staff

    hub, email, sms = answering_hub
    accepted = await submit(hub.intake, pothole(hub, **contact), token="tok-answer01",
                            language="en")
    async with hub.db.transaction() as session:
        clerk = await add_staff(session, "clerk@city.example", name="Clerk", role="supervisor")
    message = await service.reply(hub.db, clerk, accepted.conversation_id, "Fixed today.",
                                  channels=hub.adapters, submit_delivery=hub.jobs.submit_delivery,
                                  publish=hub.events.publish)
    await hub.jobs.drain()
    (sent,) = (email if channel == "email" else sms).sent
    assert (sent.channel, sent.to, sent.message_id) == (channel, to, message.id)
    assert (sms if channel == "email" else email).sent == []


@pytest.fixture
async def acknowledging_hub(settings_data: dict[str, dict[str, object]],
                            tmp_path: Path) -> AsyncIterator[tuple[Hub, RecordingAdapter,
                                                                    RecordingAdapter]]:
    """Email and SMS channels that acknowledge new conversations, SMS in the short form."""
    from hub.adapters.base import Capability

    email = RecordingAdapter(name="email", capabilities=Capability.ACKNOWLEDGE)
    sms = RecordingAdapter(name="sms",
                           capabilities=Capability.ACKNOWLEDGE | Capability.SHORT_TEXT)
    hub = await two_channel_hub(settings_data, tmp_path, email, sms)
    yield hub, email, sms
    await hub.stop()


@pytest.mark.parametrize(("contact", "channel", "to"), ANSWERED_ON)
async def test_a_submitted_form_is_acknowledged_where_the_citizen_can_read_it(
        acknowledging_hub: tuple[Hub, RecordingAdapter, RecordingAdapter],
        contact: dict[str, str], channel: str, to: str) -> None:
    hub, email, sms = acknowledging_hub
    accepted = await submit(hub.intake, pothole(hub, **contact), token="tok-ack00001",
                            language="en")
    await submit(hub.intake, pothole(hub, **contact), token="tok-ack00001", language="en")
    await hub.jobs.drain()
    (ack,) = (email if channel == "email" else sms).sent  # once, the resubmit included
    assert (ack.channel, ack.to, ack.automatic) == (channel, to, True)
    assert accepted.reference in ack.body
    short = ack.body.startswith("City Hall: we received your message.")
    assert short == (channel == "sms")  # SMS gets the short form, email the letter
    assert (sms if channel == "email" else email).sent == []
