"""The Twilio and Telegram stand-ins speak to the real libraries (twilio-python,
python-telegram-bot) as the real APIs do, and the suite's switches select what they say."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qsl

import aiohttp
import pytest
import telegram
from aiohttp import web
from telegram import Update
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from tests.support.corpus import CORPUS
from tests.support.http_standin import HttpStandIn, RecordedRequest
from tests.support.telegram_api import TelegramApi
from tests.support.twilio_api import ACCOUNT_SID, TwilioApi, signature

ROOT = Path(__file__).resolve().parents[2]
TO = "+15551230001"
FROM = "+15005550006"


class Receiver:
    """The system under test's side of a webhook: records what arrives, answers 204."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((str(request.url), dict(request.headers), await request.read()))
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    target = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", target.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    target.url = f"http://127.0.0.1:{port}"
    yield target
    await runner.cleanup()


def form_of(body: bytes) -> dict[str, str]:
    return dict(parse_qsl(body.decode(), keep_blank_values=True))


# -- Twilio ------------------------------------------------------------------------------------


async def test_twilio_client_sends_a_message_and_gets_its_sid(twilio_api: TwilioApi) -> None:
    client = twilio_api.client()
    callback = "https://hub.example/webhooks/twilio/status"
    message = await asyncio.to_thread(client.messages.create, to=TO, from_=FROM,
                                      body="Your request CH-1 is open", status_callback=callback)
    assert message.sid.startswith("SM") and len(message.sid) == 34
    assert message.status == "queued" and message.to == TO and message.num_segments == "1"
    [sent] = twilio_api.requests_to("Messages.json", "POST")
    assert sent.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert sent.form == {"To": TO, "From": FROM, "Body": "Your request CH-1 is open",
                         "StatusCallback": callback}
    assert sent.headers["Authorization"].startswith("Basic ") and sent.status == 201
    assert twilio_api.status_callbacks[message.sid] == callback


async def test_twilio_async_client_and_media_urls(twilio_api: TwilioApi) -> None:
    client = twilio_api.client(async_http=True)
    try:
        message = await client.messages.create_async(
            to=TO, from_=FROM, media_url=["https://hub.example/a.jpg", "https://hub.example/b.pdf"])
    finally:
        await client.http_client.session.close()
    assert message.sid.startswith("MM") and message.num_media == "2"
    [sent] = twilio_api.requests
    assert sent.form_lists["MediaUrl"] == ["https://hub.example/a.jpg", "https://hub.example/b.pdf"]


async def test_twilio_refuses_wrong_credentials(twilio_api: TwilioApi) -> None:
    client = Client(twilio_api.account_sid, "not-the-auth-token")
    client.api.base_url = twilio_api.url
    with pytest.raises(TwilioRestException) as caught:
        await asyncio.to_thread(client.messages.create, to=TO, from_=FROM, body="x")
    assert caught.value.status == 401 and caught.value.code == 20003


@pytest.mark.parametrize("code", [21610, 21211, 20429])
async def test_twilio_rejects_the_next_send_with_an_error_code(twilio_api: TwilioApi,
                                                               code: int) -> None:
    twilio_api.reject_next(code)
    client = twilio_api.client()
    with pytest.raises(TwilioRestException) as caught:
        await asyncio.to_thread(client.messages.create, to=TO, from_=FROM, body="hello")
    assert caught.value.code == code
    assert caught.value.status == (429 if code == 20429 else 400)
    again = await asyncio.to_thread(client.messages.create, to=TO, from_=FROM, body="hello")
    assert again.status == "queued"


async def test_twilio_checks_what_twilio_checks(twilio_api: TwilioApi) -> None:
    client = twilio_api.client()
    twilio_api.opt_out(TO)
    for to, code in [(TO, 21610), ("555-0100", 21211)]:
        with pytest.raises(TwilioRestException) as caught:
            await asyncio.to_thread(client.messages.create, to=to, from_=FROM, body="x")
        assert caught.value.code == code
    assert [r.status for r in twilio_api.requests] == [400, 400]


async def test_twilio_server_errors_then_recovery(twilio_api: TwilioApi) -> None:
    twilio_api.fail_next(2, 503)
    client = twilio_api.client()
    for _ in range(2):
        with pytest.raises(TwilioRestException) as caught:
            await asyncio.to_thread(client.messages.create, to=TO, from_=FROM, body="x")
        assert caught.value.status == 503 and caught.value.code == 20503
    await asyncio.to_thread(client.messages.create, to=TO, from_=FROM, body="x")
    assert [r.status for r in twilio_api.requests] == [503, 503, 201]


async def test_twilio_media_redirects_to_a_file_with_credentials(twilio_api: TwilioApi) -> None:
    url = twilio_api.add_media(b"\xff\xd8jpeg bytes", "image/jpeg")
    auth = {"Authorization": aiohttp.encode_basic_auth(twilio_api.account_sid,
                                                       twilio_api.auth_token)}
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers=auth, allow_redirects=False) as first:
            assert first.status == 302 and "/media-files/" in first.headers["Location"]
        async with session.get(url, headers=auth) as followed:
            assert followed.status == 200 and followed.content_type == "image/jpeg"
            assert await followed.read() == b"\xff\xd8jpeg bytes"
        async with session.get(url) as anonymous:
            assert anonymous.status == 401 and (await anonymous.json())["code"] == 20003


async def test_twilio_signs_inbound_and_status_webhooks(twilio_api: TwilioApi,
                                                        receiver: Receiver) -> None:
    validator = RequestValidator(twilio_api.auth_token)
    answer = await twilio_api.send_inbound(f"{receiver.url}/webhooks/twilio/sms", TO,
                                           "pothole", media=[(b"png", "image/png")])
    assert answer.status == 204
    url, headers, body = receiver.received[0]
    params = form_of(body)
    assert validator.validate(url, params, headers["X-Twilio-Signature"])
    assert params["Body"] == "pothole" and params["NumMedia"] == "1"
    assert params["MessageSid"].startswith("MM") and "/Media/ME" in params["MediaUrl0"]

    message = await asyncio.to_thread(twilio_api.client().messages.create, to=TO, from_=FROM,
                                      body="x", status_callback=f"{receiver.url}/status")
    await twilio_api.send_status(message.sid, "undelivered", error_code=30003)
    url, headers, body = receiver.received[1]
    params = form_of(body)
    assert validator.validate(url, params, headers["X-Twilio-Signature"])
    assert params["MessageStatus"] == "undelivered" and params["ErrorCode"] == "30003"
    assert twilio_api.messages[message.sid]["status"] == "undelivered"


async def test_twilio_signs_for_the_public_url_when_told(twilio_api: TwilioApi,
                                                         receiver: Receiver) -> None:
    public = "https://hub.city.example/webhooks/twilio/sms"
    await twilio_api.send_inbound(f"{receiver.url}/sms", TO, "hi", sign_url=public)
    url, headers, body = receiver.received[0]
    validator = RequestValidator(twilio_api.auth_token)
    assert validator.validate(public, form_of(body), headers["X-Twilio-Signature"])
    assert not validator.validate(url, form_of(body), headers["X-Twilio-Signature"])


def test_twilio_signature_matches_the_upstream_vectors() -> None:
    data = json.loads((CORPUS / "twilio-python-request-validator" /
                       "request_validator_vectors.derived.json").read_text())
    vector = next(v for v in data["vectors"] if v["name"] == "form_params_basic")
    assert signature(data["auth_token"], vector["url"], vector["params"]) == \
        vector["expected_signature"]


# -- Telegram ----------------------------------------------------------------------------------


async def test_bot_get_me_and_send_message(telegram_api: TelegramApi) -> None:
    async with telegram_api.bot() as bot:  # initialize() calls getMe
        assert bot.username == "cityhall_test_bot"
        sent = await bot.send_message(chat_id=4242, text="Your request CH-7 is open")
    assert sent.text == "Your request CH-7 is open" and sent.chat.id == 4242
    assert sent.chat.type == "private" and sent.from_user is not None and sent.from_user.is_bot
    [call] = telegram_api.calls("sendMessage")
    assert call.params["chat_id"] == "4242" and call.status == 200
    assert telegram_api.sent[0]["message_id"] == sent.message_id


async def test_bot_polls_updates_a_test_pushed(telegram_api: TelegramApi) -> None:
    corpus = json.loads((CORPUS / "opsdroid-telegram" /
                         "json_response_example.derived.json").read_text())
    pushed = telegram_api.push_update(corpus[0])
    command = telegram_api.push_message(777, "/start CH-12", username="ada")
    async with telegram_api.bot() as bot:
        updates = await bot.get_updates(offset=0, timeout=0)
        assert [u.update_id for u in updates] == [pushed["update_id"], command["update_id"]]
        assert updates[0] == Update.de_json(corpus[0], bot)
        assert updates[0].message is not None and updates[0].message.text == "Hello"
        assert updates[1].message is not None and updates[1].message.text == "/start CH-12"
        assert updates[1].message.entities[0].type == "bot_command"
        # The next offset confirms both: Telegram forgets them.
        assert await bot.get_updates(offset=command["update_id"] + 1, timeout=0) == ()
    assert telegram_api.pending == []


async def test_get_updates_long_polls_until_an_update_arrives(telegram_api: TelegramApi) -> None:
    async with telegram_api.bot() as bot:
        poll = asyncio.create_task(bot.get_updates(timeout=5))
        await asyncio.sleep(0.2)
        assert not poll.done()
        telegram_api.push_message(1, "late")
        updates = await asyncio.wait_for(poll, 2)
        assert updates[0].message is not None and updates[0].message.text == "late"
        started = asyncio.get_running_loop().time()
        assert await bot.get_updates(offset=updates[0].update_id + 1,
                                     timeout=timedelta(seconds=0.3)) == ()
        assert asyncio.get_running_loop().time() - started >= 0.3


async def test_a_second_poll_ends_the_first_with_conflict(telegram_api: TelegramApi) -> None:
    async with telegram_api.bot() as first, telegram_api.bot() as second:
        waiting = asyncio.create_task(first.get_updates(timeout=5))
        await asyncio.sleep(0.2)
        await second.get_updates(timeout=0)
        with pytest.raises(telegram.error.Conflict, match="terminated by other getUpdates"):
            await waiting


async def test_get_file_downloads_an_inbound_photo(telegram_api: TelegramApi) -> None:
    telegram_api.push_photo(31, b"\x89PNG photo of a pothole", caption="Main St")
    async with telegram_api.bot() as bot:
        [update] = await bot.get_updates(timeout=0)
        assert update.message is not None and update.message.caption == "Main St"
        file = await bot.get_file(update.message.photo[-1].file_id)
        assert file.file_path is not None and file.file_path.startswith(telegram_api.base_file_url)
        assert bytes(await file.download_as_bytearray()) == b"\x89PNG photo of a pothole"
    assert telegram_api.requests[-1].path.startswith("/file/bot")


async def test_send_photo_and_document_upload_multipart(telegram_api: TelegramApi) -> None:
    async with telegram_api.bot() as bot:
        photo = await bot.send_photo(chat_id=9, photo=b"jpeg-bytes", caption="map")
        document = await bot.send_document(chat_id=9, document=b"%PDF-1.7",
                                           filename="permit.pdf")
        assert document.document is not None and document.document.file_name == "permit.pdf"
        file = await bot.get_file(document.document.file_id)
        assert bytes(await file.download_as_bytearray()) == b"%PDF-1.7"
    assert photo.caption == "map" and photo.photo[-1].file_size == len(b"jpeg-bytes")
    upload = telegram_api.calls("sendDocument")[0]
    assert upload.headers["Content-Type"].startswith("multipart/form-data")
    assert upload.files["document"].filename == "permit.pdf"
    assert upload.files["document"].content == b"%PDF-1.7" and upload.form["chat_id"] == "9"


async def test_blocked_user_raises_forbidden(telegram_api: TelegramApi) -> None:
    telegram_api.block(55)
    async with telegram_api.bot() as bot:
        with pytest.raises(telegram.error.Forbidden, match="bot was blocked by the user"):
            await bot.send_message(chat_id=55, text="hello")
        await bot.send_message(chat_id=56, text="others still get theirs")
    body = telegram_api.calls("sendMessage")[0]
    assert body.status == 403


async def test_flood_control_raises_retry_after(telegram_api: TelegramApi,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")  # PTB 22 warns when retry_after is read as int
    telegram_api.rate_limit(3)
    async with telegram_api.bot() as bot:
        with pytest.raises(telegram.error.RetryAfter) as caught:
            await bot.send_message(chat_id=1, text="hello")
        await bot.send_message(chat_id=1, text="hello again")
    assert caught.value.retry_after == timedelta(seconds=3)
    assert [r.status for r in telegram_api.calls("sendMessage")] == [429, 200]
    assert telegram_api.calls("sendMessage")[0].params["text"] == "hello"


async def test_bot_api_errors_map_to_ptb_exceptions(telegram_api: TelegramApi) -> None:
    telegram_api.fail_next(1, 502, only="sendMessage")
    async with telegram_api.bot() as bot:
        with pytest.raises(telegram.error.NetworkError, match="Bad Gateway"):
            await bot.send_message(chat_id=1, text="x")
        with pytest.raises(telegram.error.BadRequest, match=r"(?i)message text is empty"):
            await bot.send_message(chat_id=1, text=" ")
        with pytest.raises(telegram.error.BadRequest, match=r"(?i)invalid file_id"):
            await bot.get_file("nope")
    with pytest.raises(telegram.error.InvalidToken):
        async with telegram.Bot("1:wrong", base_url=telegram_api.base_url):
            pass


async def test_webhook_mode(telegram_api: TelegramApi, receiver: Receiver) -> None:
    async with telegram_api.bot() as bot:
        assert await bot.set_webhook(f"{receiver.url}/webhooks/telegram", secret_token="s3cret")
        info = await bot.get_webhook_info()
        assert info.url == f"{receiver.url}/webhooks/telegram" and info.pending_update_count == 0
        with pytest.raises(telegram.error.Conflict, match="webhook is active"):
            await bot.get_updates(timeout=0)
        update = telegram_api.push_message(3, "via webhook")
        [answer] = await telegram_api.deliver_pending()
        assert answer.status == 204 and telegram_api.pending == []
        _url, headers, body = receiver.received[0]
        assert headers["X-Telegram-Bot-Api-Secret-Token"] == "s3cret"
        assert json.loads(body) == update
        assert await bot.delete_webhook()
        assert (await bot.get_webhook_info()).url == ""


# -- shared faults -----------------------------------------------------------------------------


async def test_slow_and_dropped_answers(telegram_api: TelegramApi) -> None:
    telegram_api.slow_next(0.5, only="getMe")
    telegram_api.disconnect_next(only="getMe")
    url = f"{telegram_api.base_url}{telegram_api.token}/getMe"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(TimeoutError):
            await session.get(url, timeout=aiohttp.ClientTimeout(total=0.2))
        with pytest.raises(aiohttp.ClientError):  # POST: aiohttp retries a dropped GET itself
            await session.post(url)
        async with session.get(url) as answer:
            assert (await answer.json())["ok"] is True
    await asyncio.sleep(0.4)  # the slow answer finishes server-side
    assert [r.status for r in telegram_api.requests] == [200, None, 200]
    assert telegram_api.requests[0].at < telegram_api.requests[1].at


async def test_wait_for_requests(twilio_api: TwilioApi) -> None:
    client = twilio_api.client()
    sending = asyncio.create_task(asyncio.to_thread(client.messages.create, to=TO, from_=FROM,
                                                    body="later"))
    [request] = await twilio_api.wait_for_requests(1, "Messages.json", timeout=5)
    assert isinstance(request, RecordedRequest) and request.form["Body"] == "later"
    await sending


async def test_stand_ins_listen_on_their_own_free_ports() -> None:
    async with TwilioApi() as one, TelegramApi() as two:
        assert one.port != two.port and all(isinstance(s, HttpStandIn) for s in (one, two))
    assert one.url.startswith("http://127.0.0.1:")


# -- suite switches ----------------------------------------------------------------------------

CORPUS_E2E = "tests/adapters/email/test_e2e.py::test_every_corpus_mail_against_the_real_hub"


def collected(*args: str, **env: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT, env=os.environ | env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode in (0, 5), result.stdout + result.stderr
    return [line for line in result.stdout.splitlines() if "::" in line]


def test_switches_select_backends_and_markers() -> None:
    delivery = "tests/workers/test_delivery.py"
    default = collected(CORPUS_E2E, delivery)
    assert [t for t in default if t.startswith(CORPUS_E2E)] == [f"{CORPUS_E2E}[sqlite]"]
    on_pg = [t for t in default if "[postgresql" in t]
    assert on_pg  # every storage test runs on both backends by default

    full_pg = collected(CORPUS_E2E, delivery, "--full", "-m", "postgres")
    assert full_pg == [f"{CORPUS_E2E}[postgresql]", *on_pg]

    sqlite_redis = collected(CORPUS_E2E, delivery, "-m", "redis", HUB_TEST_BACKENDS="sqlite",
                             HUB_TEST_FULL="1")
    assert sqlite_redis and set(sqlite_redis) < set(default)
    assert not any("[postgresql" in t or t.startswith(CORPUS_E2E) for t in sqlite_redis)
