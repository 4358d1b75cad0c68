"""Telegram channel: fixture tables for verify/parse, and send/media/polling/webhook registration
against the local fake Bot API (tests/fakes/telegram_api.py)."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from channels.base import (
    Attachment,
    Button,
    GeoPoint,
    InboundMessage,
    MalformedError,
    MessageMeta,
    OutboundMessage,
    RawRequest,
    SendError,
    SignatureError,
)
from channels.telegram import SECRET_HEADER, TelegramChannel, normalize_phone
from channels.telegram_polling import run_polling, set_webhook
from channels.text import split_text, utf16_units
from gateway.keys import SERVICES
from gateway.settings import Settings

try:
    from tests.fakes.telegram_api import TOKEN, FakeTelegram
except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from fakes.telegram_api import TOKEN, FakeTelegram  # type: ignore[no-redef]

FIXTURES = Path(__file__).parent / "fixtures" / "telegram"
SECRET = "test-Secret_123"
CHAT = 111222333


def body(name: str) -> bytes:
    """A fixture file's raw bytes."""
    return (FIXTURES / f"{name}.json").read_bytes()


def request(raw: bytes, secret: str | None = SECRET) -> RawRequest:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[SECRET_HEADER] = secret
    return RawRequest("POST", "https://paht.example/webhooks/telegram", headers, {}, raw)


def make_settings(api_base: str = "http://127.0.0.1:9", **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "telegram_token": TOKEN, "telegram_secret": SECRET, "telegram_api_base": api_base,
        "public_base_url": "https://paht.example",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


# --- verify ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("secret", "configured", "ok"),
    [
        (SECRET, SECRET, True),
        (None, SECRET, False),  # missing header
        ("wrong", SECRET, False),
        (SECRET.upper(), SECRET, False),  # case matters
        ("", "", False),  # unset secret never verifies
    ],
)
def test_verify(secret: str | None, configured: str, ok: bool) -> None:
    channel = TelegramChannel.from_settings(make_settings(telegram_secret=configured))
    req = request(body("text"), secret)
    if ok:
        channel.verify(req)
    else:
        with pytest.raises(SignatureError) as err:
            channel.verify(req)
        assert err.value.status == 403


def test_enabled() -> None:
    assert TelegramChannel.enabled(make_settings())
    assert not TelegramChannel.enabled(make_settings(telegram_secret=""))
    assert not TelegramChannel.enabled(make_settings(telegram_token=""))


# --- parse: the fixture table ---------------------------------------------------------------

def ts(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


NAME = "Nguyễn Văn An"
PARSE_TABLE: list[tuple[str, dict[str, Any]]] = [
    ("text", {"external_id": "900000001", "kind": "message",
              "text": "Đèn đường hỏng ở ngõ 12 Trần Phú", "received_at": ts(1718000041)}),
    ("text_nfd", {"external_id": "900000002", "text": "Cống bị tắc, nước tràn ra đường"}),
    ("photo_caption", {"text": "Ổ gà lớn trên đường Lê Lợi",
                       "attachments": [("image", "AgAD-large", "image/jpeg", 88212)]}),
    ("voice", {"text": "", "attachments": [("audio", "AwACAgUAAx-voice", "audio/ogg", 17746)]}),
    ("audio", {"attachments": [("audio", "CQACAgUAAx-audio", "audio/mpeg", 503210)]}),
    # a photo sent "as file" is still an image
    ("document", {"text": "Ảnh gốc",
                  "attachments": [("image", "BQACAgUAAx-doc", "image/jpeg", 2411093)]}),
    ("video", {"attachments": [("video", "BAACAgUAAx-video", "video/mp4", 3100200)]}),
    ("location", {"text": "", "location": GeoPoint(21.028511, 105.804817)}),
    ("venue", {"location": GeoPoint(10.772, 106.698,
                                    "Chợ Bến Thành, Lê Lợi, Quận 1, TP. Hồ Chí Minh")}),
    ("contact_own", {"kind": "contact", "contact_phone": "+84905123456", "reply_to": "40"}),
    ("contact_foreign", {"kind": "message", "contact_phone": None,
                         "meta": MessageMeta(foreign_contact=True)}),
    ("edited_message", {"kind": "edit", "external_id": "edit:900000013",
                        "text": "Đèn đường hỏng ở ngõ 14 Trần Phú", "received_at": ts(1718000100)}),
    ("callback_query", {"kind": "postback", "postback": "confirm:yes", "text": "Đồng ý",
                        "reply_to": "60", "meta": MessageMeta(callback_id="4382bfdwdsb323b2d9")}),
    ("command_botname", {"text": "/start ref_qr", "kind": "message"}),
]


@pytest.mark.parametrize(("fixture", "expected"), PARSE_TABLE, ids=[f for f, _ in PARSE_TABLE])
def test_parse(fixture: str, expected: dict[str, Any]) -> None:
    channel = TelegramChannel.from_settings(make_settings())
    req = request(body(fixture))
    channel.verify(req)
    messages = channel.parse(req)
    assert len(messages) == 1
    m = messages[0]
    assert m.channel == "telegram"
    assert m.sender == f"telegram:{CHAT}"
    assert m.sender_name == NAME
    assert m.received_at.tzinfo is not None
    assert m.raw == json.loads(body(fixture))  # the Update untouched: flags live in meta
    assert m.meta == expected.get("meta", MessageMeta())
    for key, value in expected.items():
        if key == "attachments":
            got = [(a.kind, a.url, a.mime, a.size) for a in m.attachments]
            assert got == value
        else:
            assert getattr(m, key) == value, key
    if "attachments" not in expected:
        assert m.attachments == ()
    json.dumps(m.raw)  # JSON-ready for the audit trail


def test_parse_long_text_kept_whole() -> None:
    (m,) = TelegramChannel.from_settings(make_settings()).parse(request(body("long_text")))
    assert len(m.text) > 4096
    assert m.text.startswith("Rác thải ùn ứ")


@pytest.mark.parametrize("fixture", ["sticker", "my_chat_member"])
def test_ignored_updates(fixture: str) -> None:
    assert TelegramChannel.from_settings(make_settings()).parse(request(body(fixture))) == []


@pytest.mark.parametrize("fixture", ["malformed", "no_update_id", "not_an_object"])
def test_malformed(fixture: str) -> None:
    with pytest.raises(MalformedError):
        TelegramChannel.from_settings(make_settings()).parse(request(body(fixture)))


def test_malformed_shape_inside_update() -> None:
    raw = json.dumps({"update_id": 5, "message": {"message_id": 1, "text": "no chat"}}).encode()
    with pytest.raises(MalformedError):
        TelegramChannel.from_settings(make_settings()).parse(request(raw))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("84905123456", "+84905123456"),  # Telegram's own-contact format: no "+"
        ("+84905123456", "+84905123456"),
        ("0905123456", "+84905123456"),
        ("905123456", "+84905123456"),
        ("12", None),
    ],
)
def test_normalize_phone(raw: str, expected: str | None) -> None:
    assert normalize_phone(raw) == expected


def test_split_text() -> None:
    text = ("Phản ánh của bạn đã được tiếp nhận. " * 300).strip()
    chunks = split_text(text, 4096, measure=utf16_units)
    assert len(chunks) > 1
    assert all(len(c) <= 4096 for c in chunks)
    assert " ".join(chunks) == text
    assert split_text("ngắn", 4096, measure=utf16_units) == ["ngắn"]
    emoji = "😀" * 3000  # non-BMP: two UTF-16 units each
    emoji_chunks = split_text(emoji, 4096, measure=utf16_units)
    assert all(utf16_units(c) <= 4096 for c in emoji_chunks)
    assert all(len(c.encode("utf-16-le")) // 2 <= 4096 for c in emoji_chunks)
    assert "".join(emoji_chunks) == emoji


# --- outbound against the fake Bot API ------------------------------------------------------

@pytest.fixture
async def fake(aiohttp_server: Any) -> Any:
    state = FakeTelegram()
    server = await aiohttp_server(state.app())
    state.base = str(server.make_url("")).rstrip("/")  # type: ignore[attr-defined]
    return state


@pytest.fixture
async def channel(fake: Any) -> Any:
    async with aiohttp.ClientSession() as http:
        ch = TelegramChannel.from_settings(make_settings(fake.base), http=http)
        yield ch
        await ch.close()


def out(text: str, *buttons: Button) -> OutboundMessage:
    return OutboundMessage(channel="telegram", recipient=f"telegram:{CHAT}", text=text,
                           buttons=buttons)


async def test_send_plain_text(channel: TelegramChannel, fake: FakeTelegram) -> None:
    result = await channel.send(out("Mã phản ánh của bạn: PA-2611-000123"))
    assert fake.named("getMe"), "PTB initialises the bot with getMe"
    (sent,) = fake.sent()
    assert sent["chat_id"] == CHAT
    assert sent["text"] == "Mã phản ánh của bạn: PA-2611-000123"
    assert "reply_markup" not in sent
    assert result.provider_id == "1001"


async def test_send_location_keyboard(channel: TelegramChannel, fake: FakeTelegram) -> None:
    await channel.send(out("Bạn đang ở đâu?", Button("📍 Gửi vị trí", "loc", "location"),
                           Button("Bỏ qua", "skip")))
    markup = fake.sent()[0]["reply_markup"]
    assert markup["keyboard"] == [[{"text": "📍 Gửi vị trí", "request_location": True}],
                                  [{"text": "Bỏ qua"}]]
    assert markup["one_time_keyboard"] is True and markup["resize_keyboard"] is True
    # the next message without buttons removes the reply keyboard, once
    await channel.send(out("Cảm ơn bạn"))
    await channel.send(out("Đã chuyển cơ quan xử lý"))
    assert fake.sent()[1]["reply_markup"] == {"remove_keyboard": True}
    assert "reply_markup" not in fake.sent()[2]


async def test_send_contact_keyboard(channel: TelegramChannel, fake: FakeTelegram) -> None:
    await channel.send(out("Cho xin số điện thoại", Button("Chia sẻ số", "phone", "contact")))
    markup = fake.sent()[0]["reply_markup"]
    assert markup["keyboard"] == [[{"text": "Chia sẻ số", "request_contact": True}]]


async def test_send_inline_buttons(channel: TelegramChannel, fake: FakeTelegram) -> None:
    await channel.send(out("Xác nhận gửi phản ánh?", Button("Đồng ý", "confirm:yes"),
                           Button("Sửa lại", "confirm:no"),
                           Button("Tra cứu", "https://paht.example/t/PA-1", "url")))
    markup = fake.sent()[0]["reply_markup"]
    assert markup == {"inline_keyboard": [
        [{"text": "Đồng ý", "callback_data": "confirm:yes"}],
        [{"text": "Sửa lại", "callback_data": "confirm:no"}],
        [{"text": "Tra cứu", "url": "https://paht.example/t/PA-1"}],
    ]}


async def test_send_oversized_payload_as_numbered_text(
    channel: TelegramChannel, fake: FakeTelegram
) -> None:
    await channel.send(out("Chọn lĩnh vực:", Button("Giao thông", "x" * 65),
                           Button("Môi trường", "env")))
    (sent,) = fake.sent()
    assert sent["text"] == "Chọn lĩnh vực:\n1. Giao thông\n2. Môi trường"
    assert "reply_markup" not in sent


async def test_send_long_text_split(channel: TelegramChannel, fake: FakeTelegram) -> None:
    text = ("Nội dung phản hồi rất dài. " * 400).strip()
    result = await channel.send(out(text, Button("OK", "ok")))
    sent = fake.sent()
    assert len(sent) == 3
    assert all(len(s["text"]) <= 4096 for s in sent)
    assert " ".join(s["text"] for s in sent) == text
    assert [("reply_markup" in s) for s in sent] == [False, False, True]  # buttons on the last
    assert result.raw["message_ids"] == [1001, 1002, 1003]


@pytest.mark.parametrize(
    ("status", "description", "parameters", "retryable", "retry_after"),
    [
        (429, "Too Many Requests: retry after 7", {"retry_after": 7}, True, 7.0),
        (403, "Forbidden: bot was blocked by the user", None, False, None),
        (400, "Bad Request: chat not found", None, False, None),
        (502, "Bad Gateway", None, True, None),
    ],
)
async def test_send_errors(channel: TelegramChannel, fake: FakeTelegram, status: int,
                           description: str, parameters: dict[str, Any] | None, retryable: bool,
                           retry_after: float | None) -> None:
    fake.fail("sendMessage", status, description, parameters)
    with pytest.raises(SendError) as err:
        await channel.send(out("Xin chào"))
    assert err.value.retryable is retryable
    assert err.value.retry_after == retry_after
    assert TOKEN not in str(err.value)


async def test_send_network_error_is_retryable() -> None:
    async with aiohttp.ClientSession() as http:
        # nothing listens on port 9 (discard): connection refused
        ch = TelegramChannel.from_settings(make_settings("http://127.0.0.1:9"), http=http)
        with pytest.raises(SendError) as err:
            await ch.send(out("Xin chào"))
        await ch.close()
    assert err.value.retryable is True
    assert TOKEN not in str(err.value)


async def test_send_wrong_token_never_leaks(fake: FakeTelegram) -> None:
    async with aiohttp.ClientSession() as http:
        ch = TelegramChannel.from_settings(
            make_settings(fake.base, telegram_token="999:WRONG-token"), http=http)
        with pytest.raises(SendError) as err:
            await ch.send(out("Xin chào"))
        await ch.close()
    assert err.value.retryable is False
    assert "WRONG-token" not in str(err.value)
    assert not fake.sent()


async def test_send_bad_recipient(channel: TelegramChannel) -> None:
    msg = OutboundMessage(channel="telegram", recipient="zalo:123", text="x")
    with pytest.raises(SendError) as err:
        await channel.send(msg)
    assert err.value.retryable is False


async def test_send_answers_callback_from_metadata(channel: TelegramChannel,
                                                   fake: FakeTelegram) -> None:
    fake.fail("answerCallbackQuery", 400, "Bad Request: query is too old")
    msg = OutboundMessage(channel="telegram", recipient=f"telegram:{CHAT}", text="Đã gửi",
                          metadata={"callback_query_id": "4382bfdwdsb323b2d9"})
    await channel.send(msg)
    assert [c.params["callback_query_id"] for c in fake.named("answerCallbackQuery")] == [
        "4382bfdwdsb323b2d9"]
    assert [s["text"] for s in fake.sent()] == ["Đã gửi"]


async def test_answer_callback(channel: TelegramChannel, fake: FakeTelegram) -> None:
    await channel.answer_callback("4382bfdwdsb323b2d9")
    (call,) = fake.named("answerCallbackQuery")
    assert call.params["callback_query_id"] == "4382bfdwdsb323b2d9"


# --- media --------------------------------------------------------------------------------

async def test_fetch_media(channel: TelegramChannel, fake: FakeTelegram) -> None:
    fake.add_file("AwACAgUAAx-voice", "voice/file_7.oga", b"OggS" + b"\x00" * 1000)
    (m,) = channel.parse(request(body("voice")))
    data, mime = await channel.fetch_media(m.attachments[0], max_bytes=1_000_000)
    assert data.startswith(b"OggS") and len(data) == 1004
    assert mime == "audio/ogg"
    assert fake.downloads == ["voice/file_7.oga"]


async def test_fetch_media_too_large_announced(channel: TelegramChannel,
                                               fake: FakeTelegram) -> None:
    att = Attachment("video", "big", "video/mp4", size=25 * 1024 * 1024)
    with pytest.raises(SendError) as err:
        await channel.fetch_media(att, max_bytes=100 * 1024 * 1024)  # 20 MB bot limit wins
    assert err.value.code == "media_too_large" and not err.value.retryable
    assert not fake.named("getFile")


async def test_fetch_media_too_large_per_getfile(channel: TelegramChannel,
                                                 fake: FakeTelegram) -> None:
    fake.add_file("doc", "documents/file_1.pdf", b"%PDF" * 100)
    with pytest.raises(SendError) as err:
        await channel.fetch_media(Attachment("file", "doc"), max_bytes=100)
    assert err.value.code == "media_too_large"
    assert fake.downloads == []


async def test_fetch_media_stream_stops_past_limit(channel: TelegramChannel,
                                                   fake: FakeTelegram) -> None:
    fake.add_file("liar", "photos/file_2.jpg", b"\xff" * 300_000, reported=None)
    with pytest.raises(SendError) as err:
        await channel.fetch_media(Attachment("image", "liar"), max_bytes=100_000)
    assert err.value.code == "media_too_large"


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd"])
async def test_fetch_media_refuses_foreign_paths(channel: TelegramChannel, fake: FakeTelegram,
                                                 path: str) -> None:
    fake.add_file("evil", path, b"x")
    with pytest.raises(SendError) as err:
        await channel.fetch_media(Attachment("file", "evil"), max_bytes=1000)
    assert err.value.code == "file_path"
    assert fake.downloads == []


async def test_fetch_media_unknown_file(channel: TelegramChannel, fake: FakeTelegram) -> None:
    with pytest.raises(SendError) as err:
        await channel.fetch_media(Attachment("image", "nope"), max_bytes=1000)
    assert err.value.retryable is False


# --- webhook registration and long polling ------------------------------------------------

async def test_set_webhook(fake: FakeTelegram) -> None:
    info = await set_webhook(make_settings(fake.base))
    (call,) = fake.named("setWebhook")
    assert call.params["url"] == "https://paht.example/webhooks/telegram"
    assert call.params["secret_token"] == SECRET
    assert call.params["allowed_updates"] == ["message", "edited_message", "callback_query"]
    assert info["url"] == "https://paht.example/webhooks/telegram"


async def test_set_webhook_rejects_bad_secret(fake: FakeTelegram) -> None:
    with pytest.raises(ValueError):
        await set_webhook(make_settings(fake.base, telegram_secret="has space"))
    assert not fake.calls


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBUserWarning")
async def test_polling_accepts_before_confirming(channel: TelegramChannel,
                                                 fake: FakeTelegram) -> None:
    fake.pending = [json.loads(body(n)) for n in ("text", "photo_caption", "voice", "sticker")]
    later = json.loads(body("edited_message")) | {"update_id": 900000020}
    stop = asyncio.Event()
    batches: list[list[InboundMessage]] = []
    failures = 1

    async def accept(messages: list[InboundMessage]) -> None:
        nonlocal failures
        if failures:  # the database is down once: nothing may be confirmed
            failures -= 1
            raise RuntimeError("database unavailable")
        batches.append(messages)
        if len(batches) == 1:
            fake.pending.append(later)  # arrives while we were busy
        if len(batches) == 2:
            stop.set()

    await run_polling(channel, accept, stop, poll_seconds=0, backoff=0.0)
    assert len(fake.named("deleteWebhook")) == 1
    polls = fake.named("getUpdates")
    assert "offset" not in polls[0].params and "offset" not in polls[1].params  # redelivered
    assert polls[2].params["offset"] == 900000017
    assert [m.external_id for m in batches[0]] == ["900000001", "900000004", "900000005"]
    assert [m.external_id for m in batches[1]] == ["edit:900000020"]
    # same parse code as the webhook
    webhook = TelegramChannel.from_settings(make_settings()).parse(request(body("photo_caption")))
    assert batches[0][1] == webhook[0]


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBUserWarning")
async def test_polling_backs_off_and_recovers(channel: TelegramChannel,
                                              fake: FakeTelegram) -> None:
    fake.pending = [json.loads(body("text"))]
    fake.fail("getUpdates", 429, "Too Many Requests: retry after 0", {"retry_after": 0})
    fake.fail("getUpdates", 502, "Bad Gateway")
    fake.fail("getUpdates", 409, "Conflict: terminated by other getUpdates request")
    stop = asyncio.Event()
    got: list[InboundMessage] = []

    async def accept(messages: list[InboundMessage]) -> None:
        got.extend(messages)
        stop.set()

    await run_polling(channel, accept, stop, poll_seconds=0, backoff=0.0)
    assert [m.external_id for m in got] == ["900000001"]
    assert len(fake.named("getUpdates")) == 4
    assert len(fake.named("deleteWebhook")) == 1


async def test_polling_stops_mid_poll(channel: TelegramChannel, fake: FakeTelegram) -> None:
    stop = asyncio.Event()
    stop.set()
    await run_polling(channel, lambda _: asyncio.sleep(0), stop)
    assert not fake.named("getUpdates")


# --- through the real webhook route -------------------------------------------------------

@pytest.fixture
async def app_client(settings_factory: Any, gateway_client: Any) -> Any:
    return await gateway_client(settings_factory(
        telegram_token=TOKEN, telegram_secret=SECRET, telegram_api_base="http://127.0.0.1:9"))


async def stored_events(client: Any) -> list[Any]:
    from sqlmodel import select

    from store.models import InboundEvent

    async with client.app[SERVICES].sessions() as session:
        return list((await session.exec(select(InboundEvent))).all())


async def post(client: Any, raw: bytes, secret: str | None = SECRET) -> Any:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[SECRET_HEADER] = secret
    return await client.post("/webhooks/telegram", data=raw, headers=headers)


async def test_route_stores_once(app_client: Any) -> None:
    first = await post(app_client, body("text"))
    assert first.status == 200
    again = await post(app_client, body("text"))  # Telegram resends after 60 s without 2xx
    assert again.status == 200
    events = await stored_events(app_client)
    assert [(e.channel, e.external_id, e.sender) for e in events] == [
        ("telegram", "900000001", f"telegram:{CHAT}")
    ]


@pytest.mark.parametrize(
    ("fixture", "secret", "status"),
    [
        ("text", None, 403),
        ("text", "wrong", 403),
        ("malformed", SECRET, 400),
        ("sticker", SECRET, 200),
        ("my_chat_member", SECRET, 200),
    ],
)
async def test_route_rejects_and_ignores(app_client: Any, fixture: str, secret: str | None,
                                         status: int) -> None:
    resp = await post(app_client, body(fixture), secret)
    assert resp.status == status
    assert await stored_events(app_client) == []


async def test_conversation_through_the_fake_bot_api(
    settings_factory: Any, gateway_client: Any, drain_app: Any, fake: FakeTelegram
) -> None:
    """Webhook in → worker → dialog → outbox → sendMessage on the fake: what the citizen sees."""
    client = await gateway_client(settings_factory(
        telegram_token=TOKEN, telegram_secret=SECRET, telegram_api_base=fake.base))
    assert (await post(client, body("text"))).status == 200
    await drain_app(client.app)
    (summary,) = fake.sent()
    assert summary["chat_id"] == CHAT
    assert "Đèn đường hỏng ở ngõ 12 Trần Phú" in summary["text"]
    buttons = [row[0] for row in summary["reply_markup"]["inline_keyboard"]]
    confirm = next(b for b in buttons if b["callback_data"] == "confirm")
    # the citizen presses the inline button: Telegram sends a callback_query update
    press = json.loads(body("callback_query"))
    press["update_id"] = 900000100
    press["callback_query"]["data"] = "confirm"
    press["callback_query"]["message"]["reply_markup"] = summary["reply_markup"]
    assert (await post(client, json.dumps(press).encode())).status == 200
    await drain_app(client.app)
    (done,) = fake.sent()[1:]
    assert done["chat_id"] == CHAT
    assert re.search(r"PA-\d{4}-\d{6}", done["text"]), done["text"]
    events = await stored_events(client)
    pressed = next(e for e in events if e.external_id == "900000100")
    assert pressed.message["postback"] == "confirm"
    assert pressed.message["text"] == confirm["text"]
