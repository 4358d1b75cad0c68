"""The explicit channel registry (name → class) and the set of channels an app runs.

Nothing registers itself at import time. `ChannelSet.build` is called once at start-up: it
validates each channel's typed config out of the flat settings, constructs the enabled ones
with their texts, and sorts them by the optional abilities of channels/base.py (checked once,
with isinstance), so the gateway never probes a channel with getattr.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

import aiohttp
from pydantic import BaseModel

from channels.base import (
    ButtonAnswerer,
    Channel,
    ChannelTraits,
    GetHandshake,
    MediaFetcher,
    StartStop,
    TokenRefresher,
    TokenStore,
)

log = logging.getLogger("paht.channels")

# name -> "module:Class"; resolved lazily so a broken optional dependency of one channel
# cannot keep the others from starting.
CHANNELS: dict[str, str] = {
    "web": "channels.web:WebChannel",
    "facebook": "channels.facebook:FacebookChannel",
    "zalo": "channels.zalo:ZaloChannel",
    "telegram": "channels.telegram:TelegramChannel",
    "sms": "channels.sms:SmsChannel",
    "voice": "channels.voice:VoiceChannel",
}
CHANNEL_NAMES: tuple[str, ...] = tuple(CHANNELS)

# Webhook paths → channel name (DESIGN §6).
WEBHOOK_PATHS: dict[str, str] = {
    "/webhooks/web": "web",
    "/webhooks/facebook": "facebook",
    "/webhooks/zalo": "zalo",
    "/webhooks/telegram": "telegram",
    "/webhooks/twilio/sms": "sms",
    "/webhooks/twilio/voice": "voice",
    "/webhooks/twilio/voice/recording": "voice",
    "/webhooks/twilio/voice/status": "voice",
}


def channel_class(name: str) -> type[Channel[Any]]:
    """The class registered under `name` (KeyError if unknown)."""
    module_name, _, class_name = CHANNELS[name].partition(":")
    module = importlib.import_module(module_name)
    cls = getattr(module, class_name)
    if not (isinstance(cls, type) and issubclass(cls, Channel)):
        raise TypeError(f"{CHANNELS[name]} is not a Channel")
    return cls


def traits_of(name: str) -> ChannelTraits:
    """The declared traits of channel `name`, enabled or not (KeyError if unknown)."""
    return channel_class(name).traits


def _plain_traits(name: str) -> ChannelTraits:
    # A channel outside the registry (a test double): nothing special about it.
    return ChannelTraits(label=name, title=name, reply_window=None, sms_like=False,
                         conversational=False)


class ChannelSet(MutableMapping[str, Channel[Any]]):
    """The channels of one app: the enabled ones by name (a mapping), why the others are off,
    and the enabled ones sorted by optional ability."""

    def __init__(self) -> None:
        self.enabled: dict[str, Channel[Any]] = {}
        self.disabled: dict[str, str] = {}  # name -> why
        self.handshakes: dict[str, GetHandshake] = {}
        self.lifecycles: dict[str, StartStop] = {}
        self.refreshers: dict[str, TokenRefresher] = {}
        self.answerers: dict[str, ButtonAnswerer] = {}
        self.media: dict[str, MediaFetcher] = {}

    @classmethod
    def build(
        cls,
        settings: BaseModel,
        *,
        http: aiohttp.ClientSession | None,
        tokens: TokenStore | None,
        texts: Mapping[str, Mapping[str, str]],
        names: tuple[str, ...] = CHANNEL_NAMES,
    ) -> ChannelSet:
        """Construct every enabled channel of `names`; a config that does not validate (a
        renamed setting) raises here, at start-up."""
        out = cls()
        for name in names:
            try:
                klass = channel_class(name)
            except (ImportError, AttributeError) as exc:
                out.disabled[name] = f"not installed ({type(exc).__name__})"
                continue
            config = klass.config_model.from_settings(settings)
            if not config.enabled:
                out.disabled[name] = "secrets not configured"
                continue
            out[name] = klass(config, http=http, tokens=tokens, texts=texts.get(name, {}))
        return out

    # -- the mapping of enabled channels -----------------------------------------------------

    def __getitem__(self, name: str) -> Channel[Any]:
        return self.enabled[name]

    def __setitem__(self, name: str, channel: Channel[Any]) -> None:
        """Enable `channel` under `name` and file it under the abilities it has."""
        self.pop(name, None)
        self.enabled[name] = channel
        self.disabled.pop(name, None)
        abilities: list[tuple[dict[str, Any], type]] = [
            (self.handshakes, GetHandshake), (self.lifecycles, StartStop),
            (self.refreshers, TokenRefresher), (self.answerers, ButtonAnswerer),
            (self.media, MediaFetcher),
        ]
        for table, protocol in abilities:
            if isinstance(channel, protocol):
                table[name] = channel

    def __delitem__(self, name: str) -> None:
        del self.enabled[name]
        for table in (self.handshakes, self.lifecycles, self.refreshers, self.answerers,
                      self.media):
            table.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self.enabled)

    def __len__(self) -> int:
        return len(self.enabled)

    # -- questions and fan-outs --------------------------------------------------------------

    def traits(self, name: str) -> ChannelTraits:
        """What channel `name` is like (enabled, disabled, or a test double)."""
        channel = self.enabled.get(name)
        declared = getattr(type(channel), "traits", None) if channel is not None else None
        if isinstance(declared, ChannelTraits):
            return declared
        return traits_of(name) if name in CHANNELS else _plain_traits(name)

    async def start_all(self) -> None:
        """Start every channel that holds resources (at app start; failures propagate)."""
        for channel in self.lifecycles.values():
            await channel.start()

    async def stop_all(self) -> None:
        """Stop them all at shutdown; one failing does not keep the others open."""
        for name, channel in self.lifecycles.items():
            try:
                await channel.stop()
            except Exception:
                log.exception("channel stop failed", extra={"channel": name})

    async def refresh_tokens(self) -> dict[str, bool]:
        """Rotate expiring credentials; name -> rotated (failures are logged, not raised)."""
        rotated: dict[str, bool] = {}
        for name, channel in self.refreshers.items():
            try:
                rotated[name] = await channel.refresh_if_expiring()
            except Exception:
                log.exception("token refresh failed", extra={"channel": name})
                rotated[name] = False
        return rotated

    async def answer_button(self, name: str, callback_id: str | None) -> bool:
        """Acknowledge a pressed button when the channel can (best effort: False on failure)."""
        answerer = self.answerers.get(name)
        if answerer is None or not callback_id:
            return False
        try:
            await answerer.answer_callback(callback_id)
        except Exception as exc:  # an expired query is harmless
            log.info("callback answer failed", extra={"channel": name, "why": str(exc)[:200]})
            return False
        return True


__all__ = ["CHANNELS", "CHANNEL_NAMES", "WEBHOOK_PATHS", "ChannelSet", "channel_class",
           "traits_of"]
