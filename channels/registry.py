"""The explicit channel registry: name → class. Nothing registers itself at import time."""

from __future__ import annotations

import importlib

from channels.base import Channel

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


def channel_class(name: str) -> type[Channel]:
    """The class registered under `name` (KeyError if unknown)."""
    module_name, _, class_name = CHANNELS[name].partition(":")
    module = importlib.import_module(module_name)
    cls = getattr(module, class_name)
    if not (isinstance(cls, type) and issubclass(cls, Channel)):
        raise TypeError(f"{CHANNELS[name]} is not a Channel")
    return cls
