"""The SMS channel is on when `[twilio] account_sid` and `auth_token` are set, and the hub says
so when only part of what it needs is given."""

from __future__ import annotations

from hub.adapters.base import check_adapter
from hub.adapters.sms.inbound import SmsAdapter
from hub.channels import configured_adapters, unbuilt_channels
from hub.config import Settings

SID = "AC" + "1" * 32


def settings(**twilio: str) -> Settings:
    return Settings.model_validate({"smtp": {"enabled": False}, "webchat": {"enabled": False},
                                    "twilio": twilio})


def test_credentials_turn_the_channel_on_and_it_keeps_the_contract() -> None:
    chosen = settings(account_sid=SID, auth_token="secret", from_number="+15005550006")
    (adapter,) = configured_adapters(chosen, b"reply-secret")
    assert isinstance(adapter, SmsAdapter) and adapter.name == "sms"
    check_adapter(adapter)
    assert unbuilt_channels(chosen) == []
    assert adapter.normalize_identity(" +1 415 555 0123") == "+14155550123"


def test_part_of_the_credentials_leaves_it_off_with_a_warning() -> None:
    assert configured_adapters(settings(account_sid=SID), b"s") == []
    assert unbuilt_channels(settings(account_sid=SID)) == [
        "[twilio] account_sid is set, but auth_token is empty: the sms channel is off"]
    assert unbuilt_channels(settings(auth_token="secret")) == [
        "[twilio] auth_token is set, but account_sid is empty: the sms channel is off"]
    assert unbuilt_channels(settings()) == []


def test_no_sender_number_is_said_at_start() -> None:
    assert unbuilt_channels(settings(account_sid=SID, auth_token="secret")) == [
        "[twilio] from_number is empty: texts to citizens cannot be sent"]
