"""Twilio SMS channel: fixture table of signed webhooks, REST sends and MMS downloads on a fake."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from channels.base import (
    Attachment,
    Button,
    OutboundMessage,
    SendError,
)
from channels.sms import MAX_BODY, SmsChannel, render_text, strip_diacritics
from channels.text import split_text
from gateway.keys import SERVICES

try:
    from tests.fakes import twilio_api as tw
except ImportError:  # tests/ is not a package: pytest puts it on sys.path instead
    from fakes import twilio_api as tw  # type: ignore[no-redef]

ACCOUNT_SID, AUTH_TOKEN, FakeTwilio = tw.ACCOUNT_SID, tw.AUTH_TOKEN, tw.FakeTwilio
PUBLIC, NUMBER = tw.PUBLIC, tw.NUMBER
make_settings, signed_request, run_channel = tw.make_settings, tw.signed_request, tw.run_channel
check_messages = tw.check_messages


def load(name: str) -> dict[str, Any]:
    """One SMS fixture."""
    return tw.load("sms", name)

FIXTURES = Path(__file__).parent / "fixtures" / "sms"


SMS_FIXTURES = sorted(p.name for p in FIXTURES.glob("*.json"))


@pytest.mark.parametrize("name", SMS_FIXTURES)
def test_sms_fixture_table(name: str) -> None:
    fx = load(name)
    channel = SmsChannel.from_settings(make_settings(**fx.get("settings", {})))
    raw, _, _ = signed_request(fx)
    status, messages, ack = run_channel(channel, raw)
    assert status == fx["expect"]["status"], fx["description"]
    if status == 200:
        check_messages(messages, fx["expect"]["messages"], "sms")
        assert ack.status == 200
        assert ack.content_type == "application/xml"
        assert ack.body.decode().endswith("<Response />")


def test_sms_duplicate_has_the_same_dedup_key() -> None:
    for name in SMS_FIXTURES:
        fx = load(name)
        if "duplicate_of" not in fx:
            continue
        channel = SmsChannel.from_settings(make_settings())
        first = run_channel(channel, signed_request(load(fx["duplicate_of"]))[0])[1]
        again = run_channel(channel, signed_request(fx)[0])[1]
        assert [m.external_id for m in first] == [m.external_id for m in again]


def test_status_callbacks_of_one_sid_have_distinct_keys() -> None:
    channel = SmsChannel.from_settings(make_settings())
    keys = {
        run_channel(channel, signed_request(load(name))[0])[1][0].external_id
        for name in ("status_sent.json", "status_delivered.json", "status_undelivered_30006.json")
    }
    assert len(keys) == 3


def test_wrong_auth_token_rejects_everything() -> None:
    channel = SmsChannel.from_settings(make_settings(twilio_auth_token="rotated-token"))
    raw, _, _ = signed_request(load("text_valid.json"))
    assert run_channel(channel, raw)[0] == 403


def test_public_base_url_trailing_slash_is_tolerated() -> None:
    channel = SmsChannel.from_settings(make_settings(public_base_url=PUBLIC + "/"))
    raw, _, _ = signed_request(load("text_valid.json"))
    assert run_channel(channel, raw)[0] == 200


def test_enabled_needs_sid_token_and_number() -> None:
    assert SmsChannel.enabled(make_settings())
    assert not SmsChannel.enabled(make_settings(twilio_auth_token=""))
    assert not SmsChannel.enabled(make_settings(twilio_number=""))


# --- outbound text rendering ---------------------------------------------------------------


def test_buttons_render_as_numbered_options() -> None:
    message = OutboundMessage(
        channel="sms", recipient="tel:+84905123456", text="Phản ánh của bạn thuộc lĩnh vực nào?",
        buttons=(Button("Giao thông", "sector:GT"), Button("Môi trường", "sector:MT"),
                 Button("Tra cứu", "https://paht.example.gov.vn/tra-cuu", kind="url")),
    )
    assert render_text(message) == (
        "Phản ánh của bạn thuộc lĩnh vực nào?\n1. Giao thông\n2. Môi trường\n"
        "3. Tra cứu: https://paht.example.gov.vn/tra-cuu"
    )


def test_split_text_keeps_words_and_limit() -> None:
    text = "Phản ánh " * 400
    parts = split_text(text, MAX_BODY)
    assert len(parts) > 1
    assert all(len(p) <= 1600 for p in parts)
    assert " ".join(parts).split() == text.split()
    assert split_text("ngắn", MAX_BODY) == ["ngắn"]


def test_strip_diacritics() -> None:
    assert strip_diacritics("Đường Lê Lợi bị ngập, đề nghị xử lý") == (
        "Duong Le Loi bi ngap, de nghi xu ly"
    )


# --- REST API against the fake -----------------------------------------------------------


@pytest.fixture
async def fake_twilio(aiohttp_server: Any) -> Any:
    fake = FakeTwilio()
    server = await aiohttp_server(fake.app())
    fake.base = str(server.make_url("")).rstrip("/")  # type: ignore[attr-defined]
    return fake


@pytest.fixture
async def http() -> Any:
    async with aiohttp.ClientSession() as session:
        yield session


def _out(text: str = "Đã nhận phản ánh, mã số PA-2611-000123.", **kw: Any) -> OutboundMessage:
    return OutboundMessage(channel="sms", recipient="tel:+84905123456", text=text, **kw)


async def test_send_posts_to_messages_json(fake_twilio: Any, http: Any) -> None:
    channel = SmsChannel.from_settings(make_settings(twilio_api_base=fake_twilio.base), http=http)
    result = await channel.send(_out(buttons=(Button("Có", "yes"), Button("Không", "no"))))
    assert result.provider_id and result.provider_id.startswith("SM")
    sent = fake_twilio.sends[0]
    assert sent["To"] == "+84905123456"
    assert sent["From"] == NUMBER
    assert sent["Body"] == "Đã nhận phản ánh, mã số PA-2611-000123.\n1. Có\n2. Không"
    assert sent["StatusCallback"] == PUBLIC + "/webhooks/twilio/sms"


async def test_send_long_text_in_parts(fake_twilio: Any, http: Any) -> None:
    channel = SmsChannel.from_settings(make_settings(twilio_api_base=fake_twilio.base), http=http)
    result = await channel.send(_out("Thông báo kết quả xử lý phản ánh. " * 100))
    assert result.raw["parts"] == len(fake_twilio.sends) == 3
    assert all(len(s["Body"]) <= 1600 for s in fake_twilio.sends)


async def test_send_ascii_fallback_and_messaging_service(fake_twilio: Any, http: Any) -> None:
    settings = make_settings(twilio_api_base=fake_twilio.base, sms_ascii_fallback=True,
                             twilio_number="MG" + "0" * 32)
    channel = SmsChannel.from_settings(settings, http=http)
    await channel.send(_out("Đã tiếp nhận"))
    assert fake_twilio.sends[0]["Body"] == "Da tiep nhan"
    assert fake_twilio.sends[0]["MessagingServiceSid"] == "MG" + "0" * 32
    assert "From" not in fake_twilio.sends[0]


async def test_send_media_urls(fake_twilio: Any, http: Any) -> None:
    channel = SmsChannel.from_settings(make_settings(twilio_api_base=fake_twilio.base), http=http)
    images = (Attachment("image", "https://paht.example.gov.vn/m/1.jpg", "image/jpeg"),
              Attachment("image", "https://paht.example.gov.vn/m/2.jpg", "image/jpeg"))
    await channel.send(_out(attachments=images))
    assert fake_twilio.sends[0]["MediaUrl"] == [a.url for a in images]


@pytest.mark.parametrize(
    ("status", "code", "retryable", "retry_after"),
    [
        (400, 21211, False, None),  # invalid 'To' number
        (400, 21610, False, None),  # citizen replied STOP
        (429, 20429, True, 7.0),  # too many requests
        (500, 20500, True, None),
        (503, 20503, True, None),
    ],
)
async def test_send_errors_carry_retry_policy(
    fake_twilio: Any, http: Any, status: int, code: int, retryable: bool,
    retry_after: float | None,
) -> None:
    headers = {"Retry-After": "7"} if retry_after else None
    fake_twilio.fail(status, code, "scripted failure", headers)
    channel = SmsChannel.from_settings(make_settings(twilio_api_base=fake_twilio.base), http=http)
    with pytest.raises(SendError) as info:
        await channel.send(_out())
    assert info.value.retryable is retryable
    assert info.value.code == str(code)
    assert info.value.retry_after == retry_after


async def test_send_wrong_credentials_is_not_retryable(fake_twilio: Any, http: Any) -> None:
    settings = make_settings(twilio_api_base=fake_twilio.base, twilio_auth_token="wrong")
    with pytest.raises(SendError) as info:
        await SmsChannel.from_settings(settings, http=http).send(_out())
    assert info.value.retryable is False
    assert info.value.code == "20003"


async def test_send_network_error_is_retryable(http: Any) -> None:
    settings = make_settings(twilio_api_base="http://127.0.0.1:9")  # nothing listens
    with pytest.raises(SendError) as info:
        await SmsChannel.from_settings(settings, http=http).send(_out())
    assert info.value.retryable is True


async def test_send_refuses_non_phone_recipient() -> None:
    with pytest.raises(SendError) as info:
        await SmsChannel.from_settings(make_settings()).send(
            OutboundMessage(channel="sms", recipient="telegram:42", text="x"))
    assert info.value.retryable is False


# --- MMS media download ------------------------------------------------------------------


def _media_url(fake: Any, media_sid: str) -> str:
    return f"{fake.base}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM{'3c' * 16}/Media/{media_sid}"


async def test_fetch_media_follows_redirect_without_leaking_auth(fake_twilio: Any,
                                                                 http: Any) -> None:
    fake_twilio.add_media("ME1", b"\xff\xd8\xff\xe0 fake jpeg", "image/jpeg")
    channel = SmsChannel.from_settings(make_settings(twilio_api_base=fake_twilio.base), http=http)
    data, mime = await channel.fetch_media(
        Attachment("image", _media_url(fake_twilio, "ME1"), "image/jpeg"), 1_000_000)
    assert data.startswith(b"\xff\xd8")
    assert mime == "image/jpeg"
    assert len(fake_twilio.cdn_hits) == 1
    assert "Authorization" not in fake_twilio.cdn_hits[0]


async def test_fetch_media_size_limit(fake_twilio: Any, http: Any) -> None:
    fake_twilio.add_media("ME2", b"x" * 5000, "image/jpeg")
    channel = SmsChannel.from_settings(make_settings(twilio_api_base=fake_twilio.base), http=http)
    with pytest.raises(SendError) as info:
        await channel.fetch_media(Attachment("image", _media_url(fake_twilio, "ME2")), 1000)
    assert info.value.retryable is False


async def test_fetch_media_missing_is_not_retryable(fake_twilio: Any, http: Any) -> None:
    channel = SmsChannel.from_settings(make_settings(twilio_api_base=fake_twilio.base), http=http)
    with pytest.raises(SendError) as info:
        await channel.fetch_media(Attachment("image", _media_url(fake_twilio, "MEnone")), 1000)
    assert info.value.retryable is False


@pytest.mark.parametrize("url", [
    "https://evil.example.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",
    "https://api.twilio.com.evil.example/x",
    "ftp://api.twilio.com/x",
    "http://api.twilio.com/x",  # credentials only over TLS
])
async def test_fetch_media_refuses_other_hosts(url: str) -> None:
    channel = SmsChannel.from_settings(make_settings(twilio_api_base="https://api.twilio.com"))
    with pytest.raises(SendError) as info:
        await channel.fetch_media(Attachment("image", url), 1000)
    assert info.value.code == "media_host"


# --- through the real app (tests/conftest.py fixtures) -------------------------------------


async def _post(client: Any, fx: dict[str, Any]) -> Any:
    raw, suffix, body = signed_request(fx)
    return await client.post(suffix, data=body, headers=dict(raw.headers))


async def test_route_accepts_signed_sms_once(settings_factory: Any, gateway_client: Any) -> None:
    settings = settings_factory(twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN,
                                twilio_number=NUMBER, public_base_url=PUBLIC)
    client = await gateway_client(settings)
    for name, status in [("text_valid.json", 200), ("text_duplicate.json", 200),
                         ("text_forged_signature.json", 403), ("empty_body.json", 400),
                         ("mms_two_media.json", 200), ("status_delivered.json", 200)]:
        resp = await _post(client, load(name))
        assert resp.status == status, name
        if status == 200:
            assert "<Response" in await resp.text()
    stored = await _stored_ids(client, "sms")
    assert sorted(stored) == sorted([f"SM{'1a' * 16}", f"MM{'3c' * 16}",
                                     f"SM{'b4' * 16}:delivered"])


async def _stored_ids(client: Any, channel: str) -> list[str]:
    """External ids stored for `channel`, read from the database."""
    from sqlmodel import select

    from store.models import InboundEvent

    async with client.app[SERVICES].sessions() as session:
        query = select(InboundEvent.external_id).where(InboundEvent.channel == channel)
        return list((await session.exec(query)).all())
