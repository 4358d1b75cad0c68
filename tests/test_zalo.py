"""Zalo OA channel: fixture table (tolerant MAC verify + parse), cs sends against a local fake
OpenAPI/OAuth server (tests/fakes/zalo_api.py), token rotation through the TokenStore, error
codes, the 7-day window and media fetches."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
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
from channels.zalo import ZaloChannel, ZaloConfig, phone_e164
from channels.zalo_tokens import TOKEN_KEY, InMemoryTokenStore, TokenError
from gateway.keys import SERVICES
from gateway.settings import Settings

try:
    from tests.fakes.fixture_table import check_field, run_route
    from tests.fakes.zalo_api import APP_ID, APP_SECRET, FakeZalo
except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from fakes.fixture_table import check_field, run_route  # type: ignore[no-redef]
    from fakes.zalo_api import APP_ID, APP_SECRET, FakeZalo  # type: ignore[no-redef]

FIXTURES = Path(__file__).parent / "fixtures" / "zalo"
OA_SECRET = "test-oa-secret-key"
OA_ID = "388613280878808645"


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "zalo_app_id": APP_ID,
        "zalo_app_secret": APP_SECRET,
        "zalo_oa_secret": OA_SECRET,
        "zalo_access_token": "access-1",
        "zalo_refresh_token": "refresh-1",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def mac(first: str, body: bytes, ts: str, secret: str) -> str:
    return "mac=" + hashlib.sha256((first + body.decode() + ts + secret).encode()).hexdigest()


def load_case(path: Path) -> tuple[dict[str, Any], RawRequest]:
    """A fixture → (case, RawRequest) signed as its `signature` spec says."""
    case = json.loads(path.read_text(encoding="utf-8"))
    if "raw_body" in case:
        body = case["raw_body"].encode()
    else:
        body = json.dumps(case["body"], ensure_ascii=False, separators=(",", ":")).encode()
    headers: dict[str, str] = {"Content-Type": "application/json"}
    spec = case["signature"]
    if spec != "missing":
        spec = {} if spec in ("valid", "bad") else dict(spec)
        found = re.search(rb'"timestamp"\s*:\s*"?(\d+)', body)
        ts = found.group(1).decode() if found else ""
        if spec.get("ts") == "header":
            ts = spec["header_ts"]
            headers["X-ZEvent-Timestamp"] = ts
        first = OA_ID if spec.get("first") == "oa_id" else APP_ID
        secret = APP_SECRET if spec.get("secret") == "app" else OA_SECRET
        if case["signature"] == "bad":
            secret = "someone-elses-secret"
        headers["X-ZEvent-Signature"] = mac(first, body, ts, secret)
    raw = RawRequest("POST", "https://paht.example/webhooks/zalo", headers, {}, body)
    return case, raw


def check_message(channel: ZaloChannel, msg: Any, expected: dict[str, Any]) -> None:
    for key, value in expected.items():
        if key == "variant":
            assert channel.last_signature_variant == value
        else:
            check_field(msg, key, value)


CASES = sorted(FIXTURES.glob("*.json"))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_fixture_table(path: Path) -> None:
    case, raw = load_case(path)
    channel = ZaloChannel.from_settings(make_settings())
    status, messages = run_route(channel, raw)
    assert status == case["expect"]["status"], case["description"]
    expected = case["expect"].get("messages", [])
    assert len(messages) == len(expected), [m.external_id for m in messages]
    for msg, exp in zip(messages, expected):
        assert msg.channel == "zalo"
        assert msg.received_at.tzinfo is not None
        assert isinstance(msg.external_id, str) and isinstance(msg.sender, str)
        assert json.dumps(msg.raw)
        check_message(channel, msg, exp)


def test_fixture_table_is_complete() -> None:
    names = {p.stem for p in CASES}
    assert {"bad_signature", "unsigned_event", "probe", "malformed_json", "big_numeric_ids",
            "text_nfd", "long_text_3000", "submit_info", "follow", "unfollow", "audio",
            "location", "location_lat_long", "echo_oa_send_text", "received_receipt",
            "sticker", "anonymous_text", "image", "gif", "link", "video", "file"} <= names


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_redelivery_gives_the_same_external_ids(path: Path) -> None:
    _, raw = load_case(path)
    channel = ZaloChannel.from_settings(make_settings())
    _, first = run_route(channel, raw)
    _, second = run_route(channel, raw)
    assert [m.external_id for m in first] == [m.external_id for m in second]


def test_only_oa_secret_configured_still_rejects_app_secret_variant() -> None:
    _, raw = load_case(FIXTURES / "variant_app_secret_header_ts.json")
    channel = ZaloChannel.from_settings(make_settings(zalo_app_secret="rotated-app-secret"))
    with pytest.raises(SignatureError) as err:
        channel.verify(raw)
    assert err.value.status == 401


def test_unsigned_non_empty_probe_is_rejected() -> None:
    raw = RawRequest("POST", "/", {}, {}, b'{"event_name":"user_send_text"}')
    with pytest.raises(SignatureError):
        ZaloChannel.from_settings(make_settings()).verify(raw)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("84912345678", "+84912345678"), ("0912345678", "+84912345678"),
     ("+84 912 345 678", "+84912345678"), ("", None), ("12", None), (None, None)],
)
def test_phone_e164(value: Any, expected: str | None) -> None:
    assert phone_e164(value) == expected


def test_enabled() -> None:
    assert ZaloChannel.enabled(make_settings())
    assert not ZaloChannel.enabled(make_settings(zalo_app_id=""))
    assert not ZaloChannel.enabled(make_settings(zalo_access_token="", zalo_refresh_token=""))


# -- outbound against the fake OpenAPI ----------------------------------------------------------


@pytest.fixture
async def zalo(aiohttp_server: Any) -> Any:
    fake = FakeZalo()
    server = await aiohttp_server(fake.app())
    base = str(server.make_url("")).rstrip("/")
    store = InMemoryTokenStore()
    async with aiohttp.ClientSession() as http:
        settings = make_settings(zalo_api_base=base, zalo_oauth_base=base)
        channel = ZaloChannel(ZaloConfig.from_settings(settings), http=http, tokens=store,
                              allowed_media_hosts=[f"{server.host}:{server.port}"])
        yield fake, channel, store, server


def outbound(text: str = "Cảm ơn bạn. Mã phản ánh: PA-2611-000123", **kw: Any) -> OutboundMessage:
    kw.setdefault("last_inbound_at", utcnow() - timedelta(hours=1))
    return OutboundMessage(channel="zalo", recipient="zalo:2468458835296197922", text=text, **kw)


async def test_send_text(zalo: Any) -> None:
    fake, channel, store, _ = zalo
    result = await channel.send(outbound(reply_to="96d3cdf3af150460909"))
    assert result.provider_id == "zmid0000000000000001"
    (sent,) = fake.sends
    assert sent == {"recipient": {"user_id": "2468458835296197922"},
                    "message": {"text": "Cảm ơn bạn. Mã phản ánh: PA-2611-000123",
                                "quote_message_id": "96d3cdf3af150460909"}}
    assert fake.send_tokens == ["access-1"]
    assert (await store.get(TOKEN_KEY))["access_token"] == "access-1"  # seeded from settings


async def test_buttons_numbered_long_text_split_and_image(zalo: Any) -> None:
    fake, channel, _, _ = zalo
    text = "Phản ánh của bạn đã được chuyển đến cơ quan chức năng. " * 60
    await channel.send(outbound(
        text, buttons=(Button("Đúng", "Y"), Button("Sai", "N")),
        attachments=(Attachment("image", "https://paht.example/map.png"),)))
    texts = [s["message"].get("text") for s in fake.sends]
    assert len(fake.sends) == 3 and all(len(t) <= 2000 for t in texts[:2])
    assert texts[1].endswith("1. Đúng\n2. Sai")
    assert fake.sends[2]["message"]["attachment"]["payload"]["elements"] == [
        {"media_type": "image", "url": "https://paht.example/map.png"}]


async def test_expired_token_is_refreshed_rotated_stored_and_retried_once(zalo: Any) -> None:
    fake, channel, store, _ = zalo
    fake.expire_access_token()
    result = await channel.send(outbound())
    assert result.provider_id
    assert fake.send_tokens == ["access-1", "access-2"]
    assert fake.refreshes == [{"app_id": APP_ID, "grant_type": "refresh_token",
                               "refresh_token": "refresh-1"}]
    stored = await store.get(TOKEN_KEY)
    assert stored["access_token"] == "access-2" and stored["refresh_token"] == "refresh-2"
    assert stored["expires_at"] > time.time() + 80000
    # The next send uses the stored token without refreshing again.
    await channel.send(outbound())
    assert fake.send_tokens[-1] == "access-2" and len(fake.refreshes) == 1


async def test_token_rejected_again_after_refresh_is_not_retried_forever(zalo: Any) -> None:
    fake, channel, _, _ = zalo
    fake.expire_access_token()
    fake.fail(-216, "Access token is invalid")  # queued: used after the refresh succeeds
    with pytest.raises(SendError) as err:
        await channel.send(outbound())
    assert err.value.code == "-216" and not err.value.retryable
    assert len(fake.send_tokens) == 2 and len(fake.refreshes) == 1


async def test_dead_refresh_token_is_a_permanent_error(zalo: Any) -> None:
    fake, channel, _, _ = zalo
    fake.expire_access_token()
    fake.refresh_token = "revoked"
    with pytest.raises(SendError) as err:
        await channel.send(outbound())
    assert err.value.code == "token" and not err.value.retryable


@pytest.mark.parametrize(
    ("code", "retryable", "window_closed", "retry_after"),
    [(-32, True, False, True), (-230, False, True, False), (-232, False, True, False),
     (-213, False, False, False), (-201, False, False, False), (-234, True, False, True),
     (-200, True, False, False)],
)
async def test_error_codes(
    zalo: Any, code: int, retryable: bool, window_closed: bool, retry_after: bool
) -> None:
    fake, channel, _, _ = zalo
    fake.fail(code, "error")
    with pytest.raises(SendError) as err:
        await channel.send(outbound())
    assert err.value.retryable is retryable
    assert err.value.window_closed is window_closed
    assert bool(err.value.retry_after) is retry_after
    assert err.value.code == str(code)


async def test_outside_7_day_window_is_not_sent(zalo: Any) -> None:
    fake, channel, _, _ = zalo
    with pytest.raises(SendError) as err:
        await channel.send(outbound(last_inbound_at=utcnow() - timedelta(days=8)))
    assert err.value.window_closed and fake.send_tokens == []


async def test_anonymous_recipient_is_refused(zalo: Any) -> None:
    _, channel, _, _ = zalo
    with pytest.raises(SendError) as err:
        await channel.send(OutboundMessage(channel="zalo", recipient="zalo:anon:abc", text="x"))
    assert not err.value.retryable


# -- token rotation ------------------------------------------------------------------------------


async def test_refresh_if_expiring(zalo: Any) -> None:
    fake, channel, store, _ = zalo
    assert await channel.refresh_if_expiring() is True  # expiry unknown after seeding
    assert fake.refresh_token == "refresh-2"
    assert await channel.refresh_if_expiring(margin_s=3600) is False  # fresh for ~25 h
    assert await channel.refresh_if_expiring(margin_s=200_000) is True
    assert (await store.get(TOKEN_KEY))["refresh_token"] == "refresh-3"


class RacingStore(InMemoryTokenStore):
    """Simulates another process rotating the pair between our OAuth call and our put."""

    def __init__(self, fake: FakeZalo) -> None:
        super().__init__()
        self.fake = fake
        self.raced = False

    async def put(self, key: str, value: Any, expected_version: int | None) -> bool:
        if not self.raced and expected_version is not None:
            self.raced = True
            # The other process stored its own pair first (same shape, newer version).
            await super().put(key, {"access_token": "other-access", "refresh_token":
                                    "other-refresh", "expires_at": time.time() + 90000},
                              expected_version)
        return await super().put(key, value, expected_version)


async def test_lost_put_race_rereads_instead_of_using_dead_token(aiohttp_server: Any) -> None:
    fake = FakeZalo()
    server = await aiohttp_server(fake.app())
    base = str(server.make_url("")).rstrip("/")
    store = RacingStore(fake)
    async with aiohttp.ClientSession() as http:
        channel = ZaloChannel.from_settings(
            make_settings(zalo_api_base=base, zalo_oauth_base=base), http=http, tokens=store)
        await channel.refresh_if_expiring()
    stored = await store.get(TOKEN_KEY)
    assert stored["access_token"] == "other-access"  # the winner's pair, not ours
    assert len(fake.refreshes) == 1


async def test_refresh_with_token_rotated_elsewhere_uses_the_stored_pair(zalo: Any) -> None:
    fake, channel, store, _ = zalo
    await channel.token_manager.current()
    # Another process rotated: the server and the store both have generation 2 now.
    fake.generation, fake.access_token, fake.refresh_token = 2, "access-2", "refresh-2"
    record = await store.get(TOKEN_KEY)
    await store.put(TOKEN_KEY, {**record, "access_token": "access-2",
                                "refresh_token": "refresh-2"}, record["_version"])
    result = await channel.send(outbound())  # reads access-2 directly
    assert result.provider_id and fake.refreshes == []


async def test_concurrent_sends_refresh_once(zalo: Any) -> None:
    fake, channel, _, _ = zalo
    fake.expire_access_token()
    await asyncio.gather(*(channel.send(outbound(f"tin {i}")) for i in range(5)))
    assert len(fake.refreshes) == 1 and len(fake.sends) == 5


async def test_oauth_unreachable_is_retryable() -> None:
    store = InMemoryTokenStore()
    async with aiohttp.ClientSession() as http:
        channel = ZaloChannel.from_settings(
            make_settings(zalo_oauth_base="http://127.0.0.1:9"), http=http, tokens=store)
        with pytest.raises(TokenError) as err:
            await channel.refresh_if_expiring()
    assert err.value.retryable


# -- media ---------------------------------------------------------------------------------------


async def test_fetch_media_from_test_host_and_limits(zalo: Any) -> None:
    fake, channel, _, server = zalo
    fake.media["v.aac"] = (b"\xff\xf1" + b"a" * 5000, "audio/aac")
    url = str(server.make_url("/media/v.aac"))
    data, mime = await channel.fetch_media(Attachment("audio", url, mime="audio/aac"), 10_000)
    assert data.startswith(b"\xff\xf1") and mime == "audio/aac"
    with pytest.raises(SendError) as err:
        await channel.fetch_media(Attachment("audio", url), max_bytes=1000)
    assert err.value.code == "media_too_large"


@pytest.mark.parametrize(
    "url",
    ["https://evil.example.com/a.aac", "https://zadn.vn.evil.example/a.jpg",
     "https://notzalo.me/a.jpg", "ftp://voice-aac-dl.zdn.vn/a.aac"],
)
async def test_fetch_media_refuses_other_hosts(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        channel = ZaloChannel.from_settings(make_settings(), http=http)
        with pytest.raises(SendError) as err:
            await channel.fetch_media(Attachment("audio", url), max_bytes=1000)
    assert err.value.code == "media_host"


# -- through the real app (tests/conftest.py fixtures) -------------------------------------------


async def _stored_ids(client: Any, channel: str) -> list[str]:
    from sqlmodel import select

    from store.models import InboundEvent

    async with client.app[SERVICES].sessions() as session:
        query = select(InboundEvent.external_id).where(InboundEvent.channel == channel)
        return list((await session.exec(query)).all())


async def test_route_stores_each_message_once(settings_factory: Any, gateway_client: Any) -> None:
    settings = settings_factory(zalo_app_id=APP_ID, zalo_app_secret=APP_SECRET,
                                zalo_oa_secret=OA_SECRET, zalo_access_token="access-1",
                                zalo_refresh_token="refresh-1")
    client = await gateway_client(settings)
    for name, status in [("probe", 200), ("text", 200), ("text", 200), ("submit_info", 200),
                         ("big_numeric_ids", 200), ("big_numeric_ids", 200),
                         ("echo_oa_send_text", 200), ("bad_signature", 401),
                         ("unsigned_event", 401), ("malformed_json", 400)]:
        _, raw = load_case(FIXTURES / f"{name}.json")
        resp = await client.post("/webhooks/zalo", data=raw.body, headers=dict(raw.headers))
        assert resp.status == status, name
    stored = await _stored_ids(client, "zalo")
    assert sorted(stored) == sorted(["96d3cdf3af150460909", "9007199254740993123",
                                     "submit_info:2468458835296197922:1763800000123"])


async def test_new_pair_in_settings_replaces_the_stored_one_once(zalo: Any) -> None:
    fake, channel, store, _ = zalo
    await channel.refresh_if_expiring()  # store now holds generation 2, seeded from settings 1
    # An admin re-consented: the server issued a new pair, now in the settings.
    fake.access_token, fake.refresh_token = "consent-access", "consent-refresh"
    settings = make_settings(zalo_api_base=channel.config.api_base,
                             zalo_oauth_base=channel.config.oauth_base,
                             zalo_access_token="consent-access",
                             zalo_refresh_token="consent-refresh")
    restarted = ZaloChannel.from_settings(settings, http=channel.http, tokens=store)
    await restarted.send(outbound())
    assert fake.send_tokens[-1] == "consent-access"
    assert await restarted.refresh_if_expiring() is True  # expiry unknown for a seeded pair
    assert (await store.get(TOKEN_KEY))["refresh_token"] == fake.refresh_token
    # Rotation kept the seed mark: a further restart with the same settings keeps the store.
    again = ZaloChannel.from_settings(settings, http=channel.http, tokens=store)
    assert await again.token_manager.access_token() == fake.access_token


async def test_contact_button_becomes_a_request_user_info_form(zalo: Any) -> None:
    fake, channel, _, _ = zalo
    await channel.send(outbound("Bạn cho xin số điện thoại để cán bộ liên hệ nhé?",
                                buttons=(Button("Chia sẻ số điện thoại", "phone", "contact"),)))
    (sent,) = fake.sends
    payload = sent["message"]["attachment"]["payload"]
    assert payload["template_type"] == "request_user_info"
    (element,) = payload["elements"]
    assert element["title"] == "Chia sẻ số điện thoại"
    assert element["subtitle"] == "Bạn cho xin số điện thoại để cán bộ liên hệ nhé?"
    assert element["image_url"].startswith("https://")
