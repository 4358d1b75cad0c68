"""Facebook Messenger channel: fixture table (verify + parse), GET handshake, Send API against
a local fake Graph API (tests/fakes/graph_api.py), the 24 h window, errors and media fetches."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from channels.base import (
    Attachment,
    Button,
    OutboundMessage,
    RawRequest,
    SendError,
    SignatureError,
    utcnow,
)
from channels.facebook import FacebookChannel, FacebookConfig
from gateway.keys import SERVICES
from gateway.settings import Settings

try:
    from tests.fakes.fixture_table import check_field, run_route
    from tests.fakes.graph_api import PAGE_TOKEN, VERSION, FakeGraph
except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from fakes.fixture_table import check_field, run_route  # type: ignore[no-redef]
    from fakes.graph_api import PAGE_TOKEN, VERSION, FakeGraph  # type: ignore[no-redef]

FIXTURES = Path(__file__).parent / "fixtures" / "facebook"
APP_SECRET = "test-facebook-app-secret"
VERIFY_TOKEN = "verify-me-123"


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "facebook_app_secret": APP_SECRET,
        "facebook_verify_token": VERIFY_TOKEN,
        "facebook_page_token": PAGE_TOKEN,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def load_case(path: Path) -> tuple[dict[str, Any], RawRequest]:
    """A fixture → (case, RawRequest) with the body re-signed by the test secret."""
    case = json.loads(path.read_text(encoding="utf-8"))
    if "raw_body" in case:
        body = case["raw_body"].encode()
    else:
        # Meta sends escaped unicode (\u00e4) and signs those exact bytes.
        body = json.dumps(case["body"], ensure_ascii=True).encode()
    headers = {"Content-Type": "application/json", **case.get("headers", {})}
    if case["signature"] == "valid":
        headers["X-Hub-Signature-256"] = sign(body)
    elif case["signature"] == "bad":
        headers["X-Hub-Signature-256"] = sign(body, "someone-elses-secret")
    raw = RawRequest("POST", "https://paht.example/webhooks/facebook", headers, {}, body)
    return case, raw


def check_message(msg: Any, expected: dict[str, Any]) -> None:
    for key, value in expected.items():
        check_field(msg, key, value)


CASES = sorted(FIXTURES.glob("*.json"))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_fixture_table(path: Path) -> None:
    case, raw = load_case(path)
    channel = FacebookChannel.from_settings(make_settings())
    status, messages = run_route(channel, raw)
    assert status == case["expect"]["status"], case["description"]
    expected = case["expect"].get("messages", [])
    assert len(messages) == len(expected), [m.external_id for m in messages]
    for msg, exp in zip(messages, expected):
        assert msg.channel == "facebook"
        assert msg.received_at.tzinfo is not None
        assert isinstance(msg.raw, dict) and json.dumps(msg.raw)
        check_message(msg, exp)


def test_fixture_table_is_complete() -> None:
    names = {p.stem for p in CASES}
    assert {"bad_signature", "missing_signature", "malformed_json", "batch",
            "duplicate_in_batch", "text_nfd", "long_text_3000", "echo", "receipts",
            "sticker", "reaction", "postback_with_mid", "quick_reply", "attachments",
            "location", "reply_to"} <= names


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_redelivery_gives_the_same_external_ids(path: Path) -> None:
    _, raw = load_case(path)
    channel = FacebookChannel.from_settings(make_settings())
    _, first = run_route(channel, raw)
    _, second = run_route(channel, raw)
    assert [m.external_id for m in first] == [m.external_id for m in second]


def test_signature_over_raw_bytes_not_reserialised_json() -> None:
    body = b'{"object":"page","entry":[]}'
    channel = FacebookChannel.from_settings(make_settings())
    raw = RawRequest("POST", "/", {"X-Hub-Signature-256": sign(body)}, {}, body + b" ")
    with pytest.raises(SignatureError) as err:
        channel.verify(raw)
    assert err.value.status == 403


def test_enabled_needs_all_secrets() -> None:
    assert FacebookChannel.enabled(make_settings())
    assert not FacebookChannel.enabled(make_settings(facebook_page_token=""))
    assert not FacebookChannel.enabled(make_settings(facebook_app_secret=""))


@pytest.mark.parametrize(
    ("query", "status", "body"),
    [
        ({"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"},
         200, b"1158201444"),
        ({"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"}, 403, None),
        ({"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
         403, None),
        ({}, 403, None),
    ],
)
def test_handle_get(query: dict[str, str], status: int, body: bytes | None) -> None:
    channel = FacebookChannel.from_settings(make_settings())
    ack = channel.handle_get(RawRequest("GET", "/webhooks/facebook", {}, query, b""))
    assert ack.status == status
    assert ack.content_type == "text/plain"
    if body is not None:
        assert ack.body == body


# -- outbound against the fake Graph API ------------------------------------------------------


@pytest.fixture
async def graph(aiohttp_server: Any) -> Any:
    fake = FakeGraph()
    server = await aiohttp_server(fake.app())
    async with aiohttp.ClientSession() as http:
        settings = make_settings(graph_api_base=str(server.make_url(f"/{VERSION}")))
        host = f"{server.host}:{server.port}"
        yield fake, FacebookChannel(FacebookConfig.from_settings(settings), http=http,
                                    allowed_media_hosts=[host]), server


def outbound(text: str = "Cảm ơn bạn. Mã phản ánh: PA-2611-000123", **kw: Any) -> OutboundMessage:
    kw.setdefault("last_inbound_at", utcnow() - timedelta(minutes=5))
    return OutboundMessage(channel="facebook", recipient="facebook:6785432109876543", text=text,
                           **kw)


async def test_send_text_with_quick_replies(graph: Any) -> None:
    fake, channel, _ = graph
    buttons = (Button("Đúng", "CONFIRM_YES"), Button("Sai", "CONFIRM_NO"),
               Button("Số điện thoại", "PHONE", kind="contact"))
    result = await channel.send(outbound(buttons=buttons))
    assert result.provider_id == "m_fake1"
    (sent,) = fake.sends
    assert sent["recipient"] == {"id": "6785432109876543"}
    assert sent["messaging_type"] == "RESPONSE"
    assert sent["message"]["text"].startswith("Cảm ơn bạn")
    assert sent["message"]["quick_replies"] == [
        {"content_type": "text", "title": "Đúng", "payload": "CONFIRM_YES"},
        {"content_type": "text", "title": "Sai", "payload": "CONFIRM_NO"},
        {"content_type": "user_phone_number"},
    ]
    expected_proof = hmac.new(APP_SECRET.encode(), PAGE_TOKEN.encode(), hashlib.sha256)
    assert fake.queries[0]["appsecret_proof"] == expected_proof.hexdigest()
    assert "access_token" not in fake.queries[0]


async def test_long_text_is_split_and_location_buttons_are_numbered(graph: Any) -> None:
    fake, channel, _ = graph
    text = "Nội dung phản ánh của bạn đã được ghi nhận. " * 70  # ~3,000 characters
    buttons = (Button("Gửi vị trí", "LOC", kind="location"),
               Button("Xem", "https://paht.example/PA-1", kind="url"))
    result = await channel.send(outbound(text, buttons=buttons))
    assert len(fake.sends) == 2
    assert all(len(s["message"]["text"]) <= 2000 for s in fake.sends)
    assert fake.sends[-1]["message"]["text"].endswith(
        "1. Gửi vị trí\n2. Xem: https://paht.example/PA-1")
    assert result.raw["message_ids"] == ["m_fake1", "m_fake2"]


async def test_attachment_is_sent_after_text(graph: Any) -> None:
    fake, channel, _ = graph
    att = Attachment(kind="image", url="https://paht.example/map.png")
    await channel.send(outbound("Bản đồ", attachments=(att,)))
    assert fake.sends[1]["message"]["attachment"] == {
        "type": "image", "payload": {"url": "https://paht.example/map.png", "is_reusable": False}}


async def test_outside_24h_window_is_not_sent(graph: Any) -> None:
    fake, channel, _ = graph
    with pytest.raises(SendError) as err:
        await channel.send(outbound(last_inbound_at=utcnow() - timedelta(hours=25)))
    assert err.value.window_closed and not err.value.retryable
    assert fake.sends == []


@pytest.mark.parametrize(
    ("status", "code", "subcode", "retryable", "window_closed"),
    [
        (400, 10, 2018278, False, True),   # sent outside of allowed window
        (400, 613, None, True, False),     # rate limit
        (400, 4, None, True, False),       # app request limit
        (400, 32, None, True, False),      # page request limit
        (400, 551, None, False, False),    # this person isn't available right now
        (400, 100, 2018001, False, False), # no matching user found
        (400, 190, None, False, False),    # invalid token
        (500, 2, None, True, False),       # unexpected error, retry later
        (400, 1200, None, True, False),    # temporary send message failure
    ],
)
async def test_graph_errors_are_classified(
    graph: Any, status: int, code: int, subcode: int | None, retryable: bool,
    window_closed: bool,
) -> None:
    fake, channel, _ = graph
    fake.fail(status, code, subcode)
    with pytest.raises(SendError) as err:
        await channel.send(outbound())
    assert err.value.retryable is retryable
    assert err.value.window_closed is window_closed
    if code in (4, 17, 32, 613):
        assert err.value.retry_after
    assert err.value.code and str(code) in err.value.code


async def test_unknown_window_lets_meta_decide(graph: Any) -> None:
    fake, channel, _ = graph
    await channel.send(outbound(last_inbound_at=None))
    assert len(fake.sends) == 1


async def test_network_failure_is_retryable() -> None:
    async with aiohttp.ClientSession() as http:
        channel = FacebookChannel.from_settings(make_settings(graph_api_base="http://127.0.0.1:9/v21.0"),
                                  http=http)
        with pytest.raises(SendError) as err:
            await channel.send(outbound())
    assert err.value.retryable


async def test_wrong_recipient_scheme() -> None:
    channel = FacebookChannel.from_settings(make_settings())
    with pytest.raises(SendError) as err:
        await channel.send(OutboundMessage(channel="facebook", recipient="zalo:1", text="x"))
    assert not err.value.retryable


# -- media -------------------------------------------------------------------------------------


async def test_fetch_media_from_allowed_test_host(graph: Any) -> None:
    fake, channel, server = graph
    fake.add_media("p1.jpg", b"\xff\xd8jpeg" * 100)
    data, mime = await channel.fetch_media(
        Attachment("image", str(server.make_url("/media/p1.jpg"))), max_bytes=10_000)
    assert data.startswith(b"\xff\xd8") and mime == "image/jpeg"


async def test_fetch_media_stops_at_max_bytes_without_content_length(graph: Any) -> None:
    fake, channel, server = graph
    fake.add_media("big.mp4", b"0" * 200_000, mime="video/mp4", chunked=True)
    with pytest.raises(SendError) as err:
        await channel.fetch_media(Attachment("video", str(server.make_url("/media/big.mp4"))),
                                  max_bytes=50_000)
    assert err.value.code == "media_too_large" and not err.value.retryable


async def test_fetch_media_rechecks_redirect_targets(graph: Any) -> None:
    fake, channel, server = graph
    fake.redirects["r.jpg"] = "https://evil.example.com/steal"
    with pytest.raises(SendError) as err:
        await channel.fetch_media(Attachment("image", str(server.make_url("/media/r.jpg"))),
                                  max_bytes=10_000)
    assert err.value.code == "media_host"


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.com/a.jpg",
        "http://scontent.xx.fbcdn.net/a.jpg",        # https only for provider hosts
        "https://fbcdn.net.evil.example/a.jpg",
        "https://notfbcdn.net/a.jpg",
        "file:///etc/passwd",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
async def test_fetch_media_refuses_other_hosts(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        channel = FacebookChannel.from_settings(make_settings(), http=http)
        with pytest.raises(SendError) as err:
            await channel.fetch_media(Attachment("image", url), max_bytes=1000)
    assert err.value.code == "media_host" and not err.value.retryable


# -- through the real app (tests/conftest.py fixtures) -----------------------------------------


async def _stored_ids(client: Any, channel: str) -> list[str]:
    from sqlmodel import select

    from store.models import InboundEvent

    async with client.app[SERVICES].sessions() as session:
        query = select(InboundEvent.external_id).where(InboundEvent.channel == channel)
        return list((await session.exec(query)).all())


async def test_route_stores_each_message_once(settings_factory: Any, gateway_client: Any) -> None:
    settings = settings_factory(facebook_app_secret=APP_SECRET,
                                facebook_verify_token=VERIFY_TOKEN,
                                facebook_page_token=PAGE_TOKEN)
    client = await gateway_client(settings)
    resp = await client.get("/webhooks/facebook", params={
        "hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "42"})
    assert resp.status == 200 and await resp.text() == "42"
    for name, status in [("text", 200), ("text", 200), ("batch", 200), ("batch", 200),
                         ("bad_signature", 403), ("missing_signature", 403),
                         ("malformed_json", 400), ("echo", 200)]:
        _, raw = load_case(FIXTURES / f"{name}.json")
        resp = await client.post("/webhooks/facebook", data=raw.body, headers=dict(raw.headers))
        assert resp.status == status, name
    stored = await _stored_ids(client, "facebook")
    assert sorted(stored) == sorted([
        "m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM_QPpz5jdCK48PnKAjSdjfipqxqMvK8ma6AC8fplwlqLP_5cgXIbu7I3rBN0P",
        "m_b1", "m_b2", "m_b3", "m_pb1"])


async def test_route_404_when_not_configured(settings_factory: Any, gateway_client: Any) -> None:
    client = await gateway_client(settings_factory(facebook_app_secret=""))
    _, raw = load_case(FIXTURES / "text.json")
    resp = await client.post("/webhooks/facebook", data=raw.body, headers=dict(raw.headers))
    assert resp.status == 404


def test_naive_last_inbound_at_is_taken_as_utc() -> None:
    from channels.meta_send import window_closed

    naive = utcnow().replace(tzinfo=None)
    assert not window_closed(naive - timedelta(hours=23), timedelta(hours=24))
    assert window_closed(naive - timedelta(hours=25), timedelta(hours=24))
    assert not window_closed(None, timedelta(hours=24))
