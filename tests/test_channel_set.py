"""The channel contract around the channels: declared traits and abilities, the ChannelSet the
app builds once, typed message metadata through the codec, and the shared text/download helpers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bench.common import channel_settings
from channels.base import (
    ButtonAnswerer,
    Channel,
    ChannelTraits,
    InboundMessage,
    MessageMeta,
    OutboundMessage,
    SendError,
    SendResult,
)
from channels.codec import message_from_dict, message_to_dict
from channels.download import BodyTooLarge, download, hosts_check, read_limited
from channels.registry import CHANNEL_NAMES, ChannelSet, channel_class, traits_of
from channels.text import nfc, split_text, utf16_units
from gateway.domain.texts import Texts
from gateway.settings import Settings

WHEN = datetime(2024, 6, 10, 8, 0, tzinfo=UTC)


def make_settings(**overrides: Any) -> Settings:
    return Settings(_env_file=None, **{**channel_settings(), **overrides})  # type: ignore[call-arg]


# --- traits ----------------------------------------------------------------------------------

def test_every_channel_class_declares_its_own_traits() -> None:
    for name in CHANNEL_NAMES:
        cls = channel_class(name)
        assert isinstance(cls.__dict__.get("traits"), ChannelTraits), name
        assert cls.name == name


@pytest.mark.parametrize(("name", "label", "title", "window", "sms_like", "conversational"), [
    ("zalo", "Zalo", "Zalo OA", timedelta(days=7), False, True),
    ("facebook", "FB", "Facebook Messenger", timedelta(hours=24), False, True),
    ("telegram", "TG", "Telegram", None, False, True),
    ("web", "Web", "Web chat", None, False, True),
    ("sms", "SMS", "Tin nhắn SMS", None, True, False),
    ("voice", "Gọi", "Đường dây nóng", None, True, False),
])
def test_traits(name: str, label: str, title: str, window: timedelta | None, sms_like: bool,
                conversational: bool) -> None:
    assert traits_of(name) == ChannelTraits(label, title, window, sms_like, conversational,
                                            spoken=name == "voice",
                                            direct_clients=name == "web")


# --- the set the app builds ------------------------------------------------------------------

def _build(**overrides: Any) -> ChannelSet:
    return ChannelSet.build(make_settings(**overrides), http=None, tokens=None,
                            texts=Texts.load().data)


def test_build_sorts_channels_by_ability() -> None:
    channels = _build()
    assert set(channels) == set(CHANNEL_NAMES) and channels.disabled == {}
    assert set(channels.handshakes) == {"facebook"}
    assert set(channels.refreshers) == {"zalo"}
    assert set(channels.answerers) == {"telegram"}
    assert set(channels.lifecycles) == {"telegram"}
    assert set(channels.media) == set(CHANNEL_NAMES) - {"web"}
    assert channels.traits("zalo").reply_window == timedelta(days=7)
    assert channels["voice"].texts["greeting"]  # texts passed in at construction


def test_build_lists_disabled_channels_with_their_reason() -> None:
    channels = _build(telegram_token="", zalo_app_id="")
    assert "telegram" not in channels and channels.get("telegram") is None
    assert channels.disabled == {"telegram": "secrets not configured",
                                 "zalo": "secrets not configured"}
    assert "telegram" not in channels.answerers and "zalo" not in channels.refreshers
    assert channels.traits("telegram").label == "TG"  # known while disabled too


class Pressed(Channel[Any]):
    name = "pressed"

    def __init__(self, fail: bool = False) -> None:
        super().__init__(None)
        self.fail, self.answered, self.stopped = fail, [], False

    async def send(self, message: OutboundMessage) -> SendResult:
        return SendResult()

    async def answer_callback(self, callback_id: str) -> None:
        if self.fail:
            raise SendError("query too old", retryable=False)
        self.answered.append(callback_id)

    async def start(self) -> None:
        """Nothing to open."""

    async def stop(self) -> None:
        self.stopped = True
        if self.fail:
            raise RuntimeError("stop failed")


async def test_added_channels_get_their_abilities_and_fan_outs_are_safe() -> None:
    channels = ChannelSet()
    good, bad = Pressed(), Pressed(fail=True)
    channels["good"], channels["bad"] = good, bad
    assert isinstance(good, ButtonAnswerer) and set(channels.answerers) == {"good", "bad"}
    assert await channels.answer_button("good", "q1") and good.answered == ["q1"]
    assert not await channels.answer_button("bad", "q2")  # logged, not raised
    assert not await channels.answer_button("good", None)
    assert not await channels.answer_button("nobody", "q3")
    await channels.stop_all()
    assert good.stopped and bad.stopped  # one failing stop does not skip the others
    assert channels.traits("good").label == "good"  # a test double without traits
    del channels["good"]
    assert "good" not in channels.answerers and list(channels) == ["bad"]


# --- typed metadata through the codec --------------------------------------------------------

def test_meta_round_trips_and_raw_is_not_deep_copied() -> None:
    nested = {"list": [1, {"x": "ý"}]}
    msg = InboundMessage("telegram", "1", "telegram:1", "", WHEN, raw={"nested": nested},
                         meta=MessageMeta(callback_id="cb", foreign_contact=True))
    data = message_to_dict(msg)
    assert data["raw"]["nested"] is nested  # shallow: the ingest hot path
    again = message_from_dict(json.loads(json.dumps(data)))
    assert again == msg and again.meta.callback_id == "cb"


@pytest.mark.parametrize(("channel", "raw", "meta"), [
    ("voice", {"transcribed": True, "confidence": 0.8, "silent": False},
     MessageMeta(transcribed=True, confidence=0.8)),
    ("voice", {"RecordingSid": "RE1", "silent": True}, MessageMeta(silent=True)),
    ("voice", {"transcribed": False, "confidence": 0.3, "stt_error": "boom"},
     MessageMeta(stt_error="boom")),
    ("telegram", {"update_id": 1, "paht": {"callback_query_id": "q"}},
     MessageMeta(callback_id="q")),
    ("telegram", {"update_id": 2, "paht": {"foreign_contact": True}},
     MessageMeta(foreign_contact=True)),
    # A web chat body is the citizen's own JSON: nothing in it is a flag.
    ("web", {"silent": True, "transcribed": True, "paht": {"callback_query_id": "q"}},
     MessageMeta()),
], ids=["stream", "recording-silent", "stt-error", "callback", "foreign", "web-forged"])
def test_events_stored_before_meta_get_it_from_raw(channel: str, raw: dict[str, Any],
                                                   meta: MessageMeta) -> None:
    old = {"channel": channel, "external_id": "x", "sender": f"{channel}:1", "text": "",
           "received_at": WHEN.isoformat(), "raw": raw}
    msg = message_from_dict(old)
    assert msg.meta == meta and msg.raw == raw


# --- helpers ---------------------------------------------------------------------------------

def test_nfc_and_split_text() -> None:
    assert nfc("Đu\u031bo\u031b\u0300ng") == "Đường" and nfc(None) == ""
    text = "Phản ánh đường ngập\n" * 200
    chunks = split_text(text, 500)
    assert all(len(c) <= 500 for c in chunks) and "\n".join(chunks) == text.strip()
    assert split_text("   ", 10) == [] and split_text("x" * 25, 10) == ["x" * 10] * 2 + ["x" * 5]
    emoji = "😀" * 10
    assert [utf16_units(c) for c in split_text(emoji, 6, measure=utf16_units)] == [6, 6, 6, 2]


async def test_download_is_bounded_and_host_checked(aiohttp_server: Any) -> None:
    async def big(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()  # chunked: no Content-Length to trust
        await resp.prepare(request)
        for _ in range(10):
            await resp.write(b"x" * 1000)
        return resp

    async def hop(request: web.Request) -> web.Response:
        raise web.HTTPFound("https://169.254.169.254/latest")

    app = web.Application()
    app.router.add_get("/big", big)
    app.router.add_get("/hop", hop)
    server = await aiohttp_server(app)
    here = f"{server.host}:{server.port}"
    check = hosts_check(("cdn.example",), (here,))
    async with aiohttp.ClientSession() as http:
        # The test server is on loopback: as a configured API host would be, it is trusted.
        data, _ = await download(http, str(server.make_url("/big")), 20_000, allowed=check,
                                 trusted_hosts=[here])
        assert len(data) == 10_000
        with pytest.raises(SendError) as err:
            await download(http, str(server.make_url("/big")), 5_000, allowed=check,
                           trusted_hosts=[here])
        assert err.value.code == "media_too_large" and not err.value.retryable
        with pytest.raises(SendError) as err:
            await download(http, str(server.make_url("/hop")), 5_000, allowed=check,
                           trusted_hosts=[here])
        assert err.value.code == "media_host"
        async with http.get(server.make_url("/big")) as resp:
            with pytest.raises(BodyTooLarge):
                await read_limited(resp.content, 999)
