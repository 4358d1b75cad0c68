"""Telegram bot channel: webhook updates in, Bot API calls out via python-telegram-bot v22.

Provider docs: https://core.telegram.org/bots/api (Update, Message, setWebhook, getFile) and
https://core.telegram.org/bots/api#setwebhook for the `X-Telegram-Bot-Api-Secret-Token` header.
PTB runs inside our aiohttp app without its own web server or updater: the builder gets
`.updater(None)` and PTB's Bot only makes the outbound HTTP calls (base URLs from settings, so
tests talk to tests/fakes/telegram_api.py). Updates are parsed from the raw JSON dicts by
`parse_update`, shared by the webhook route and long polling (channels/telegram_polling.py).

`InboundMessage.raw` is the Update exactly as Telegram sent it; what the channel concluded
goes in `InboundMessage.meta`: `callback_id` for button presses (answer it with
`TelegramChannel.answer_callback`), `foreign_contact` / `invalid_phone` when a shared contact
was not usable.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import mimetypes
import warnings
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, ClassVar
from urllib.parse import urlsplit

import aiohttp
from pydantic import Field
from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)
from telegram import error as tg_error
from telegram.ext import Application, ApplicationBuilder

from channels.base import (
    Attachment,
    Button,
    Channel,
    ChannelConfig,
    ChannelTraits,
    InboundMessage,
    MalformedError,
    OutboundMessage,
    RawRequest,
    SendError,
    SendResult,
    SignatureError,
    TokenStore,
)
from channels.download import download
from channels.telegram_parse import normalize_phone, parse_update
from channels.text import split_text, utf16_units

__all__ = ["SECRET_HEADER", "TelegramChannel", "TelegramConfig", "normalize_phone",
           "parse_update"]

log = logging.getLogger("paht.channels.telegram")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (a header name)
MAX_TEXT = 4096  # sendMessage limit, counted in UTF-16 code units
MAX_CALLBACK_DATA = 64  # bytes
BOT_FILE_LIMIT = 20 * 1024 * 1024  # the cloud Bot API serves files up to 20 MB
ALLOWED_UPDATES = ("message", "edited_message", "callback_query")


class TelegramConfig(ChannelConfig):
    """PAHT_TELEGRAM_* plus the region for shared phone numbers and the public base URL."""

    token: str = Field(validation_alias="telegram_token")
    secret: str = Field(validation_alias="telegram_secret")
    api_base: str = Field(validation_alias="telegram_api_base")
    default_region: str = Field(validation_alias="default_region")
    public_base_url: str = Field(validation_alias="public_base_url")

    @property
    def enabled(self) -> bool:
        """Enabled when both the bot token and the webhook secret are set."""
        return bool(self.token and self.secret)


def api_urls(api_base: str) -> tuple[str, str]:
    """PTB's base_url and base_file_url ("…/bot{token}", "…/file/bot{token}") for an API base."""
    base = api_base.rstrip("/")
    return f"{base}/bot{{token}}", f"{base}/file/bot{{token}}"


def build_application(config: TelegramConfig) -> Application[Any, Any, Any, Any, Any, Any]:
    """A PTB Application with no updater and no job queue, pointed at the config's API base."""
    base_url, base_file_url = api_urls(config.api_base)
    builder: ApplicationBuilder[Any, Any, Any, Any, Any, Any] = ApplicationBuilder()
    return (
        builder.token(config.token)
        .base_url(base_url)
        .base_file_url(base_file_url)
        .updater(None)
        .job_queue(None)
        .build()
    )


def scrub(text: str, token: str) -> str:
    """Remove the bot token from an error text (PTB puts it in InvalidToken messages)."""
    return text.replace(token, "<token>") if token else text


def _retry_after(exc: tg_error.RetryAfter) -> float:
    with warnings.catch_warnings():  # PTB 22 warns that this int will become a timedelta
        warnings.simplefilter("ignore")
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def send_error(exc: Exception, token: str = "") -> SendError:
    """Map a PTB/network exception to SendError (retryable or not)."""
    text = scrub(str(exc), token)
    if isinstance(exc, tg_error.RetryAfter):
        return SendError(text, retryable=True, retry_after=_retry_after(exc), code="429")
    if isinstance(exc, tg_error.Forbidden):  # the citizen blocked the bot / deleted the chat
        return SendError(text, retryable=False, code="403")
    if isinstance(exc, tg_error.BadRequest):  # BadRequest subclasses NetworkError: test first
        return SendError(text, retryable=False, code="400")
    if isinstance(exc, tg_error.InvalidToken | tg_error.ChatMigrated | tg_error.Conflict):
        return SendError(text, retryable=False, code=type(exc).__name__)
    if isinstance(exc, tg_error.NetworkError | aiohttp.ClientError | TimeoutError):
        return SendError(text, retryable=True, code="network")
    return SendError(text, retryable=True, code=type(exc).__name__)


class TelegramChannel(Channel[TelegramConfig]):
    """Telegram Bot API via webhook (or long polling in development)."""

    name: ClassVar[str] = "telegram"
    config_model: ClassVar[type[ChannelConfig]] = TelegramConfig
    traits: ClassVar[ChannelTraits] = ChannelTraits(
        label="TG", title="Telegram", reply_window=None, sms_like=False, conversational=True
    )

    def __init__(
        self,
        config: TelegramConfig,
        *,
        http: aiohttp.ClientSession | None = None,
        tokens: TokenStore | None = None,
        texts: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(config, http=http, tokens=tokens, texts=texts)
        self._application: Application[Any, Any, Any, Any, Any, Any] | None = None
        self._lock = asyncio.Lock()
        self._keyboard_chats: set[int] = set()  # chats that currently show a reply keyboard

    # --- inbound --------------------------------------------------------------------------

    def verify(self, request: RawRequest) -> None:
        """Check the secret_token Telegram echoes in X-Telegram-Bot-Api-Secret-Token."""
        expected = self.config.secret
        got = request.header(SECRET_HEADER)
        if not expected or got is None:
            raise SignatureError("missing secret token", status=403)
        if not hmac.compare_digest(got.encode(), expected.encode()):
            raise SignatureError("wrong secret token", status=403)

    def parse(self, request: RawRequest) -> list[InboundMessage]:
        """One webhook request carries exactly one Update."""
        try:
            update = json.loads(request.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedError("body is not JSON") from exc
        if not isinstance(update, dict):
            raise MalformedError("body is not a JSON object")
        return parse_update(update, self.config.default_region or "VN")

    # --- the bot ---------------------------------------------------------------------------

    async def application(self) -> Application[Any, Any, Any, Any, Any, Any]:
        """The initialised PTB Application (built on first use; initialize() calls getMe)."""
        async with self._lock:
            if self._application is None:
                self._application = build_application(self.config)
            await self._application.initialize()  # a no-op once it succeeded
            return self._application

    async def bot(self) -> Any:
        """The initialised PTB bot (telegram.ext.ExtBot)."""
        try:
            return (await self.application()).bot
        except Exception as exc:
            raise send_error(exc, self.config.token) from None

    async def start(self) -> None:
        """Nothing to open yet: the bot is initialised on first use (getMe needs the network)."""

    async def stop(self) -> None:
        """Shut PTB's HTTP client down (the app calls it on cleanup)."""
        async with self._lock:
            if self._application is not None:
                await self._application.shutdown()
                self._application = None

    close = stop

    # --- outbound --------------------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> SendResult:
        """sendMessage (split past 4096 chars) with the buttons as a native keyboard."""
        chat_id = self._chat_id(message.recipient)
        text, markup = self._render(chat_id, message.text, message.buttons)
        if not text.strip():
            raise SendError("empty message", retryable=False, code="empty")
        bot = await self.bot()
        if query_id := message.metadata.get("callback_query_id"):
            # Stop the spinner on the pressed button; a query older than ~15 min is refused
            # by Telegram, which must not keep the reply itself from going out.
            with contextlib.suppress(tg_error.TelegramError):
                await bot.answer_callback_query(str(query_id))
        chunks = split_text(text, MAX_TEXT, measure=utf16_units)
        ids: list[int] = []
        try:
            for i, chunk in enumerate(chunks):
                last = i == len(chunks) - 1
                sent = await bot.send_message(chat_id=chat_id, text=chunk,
                                              reply_markup=markup if last else None)
                ids.append(sent.message_id)
        except Exception as exc:
            raise send_error(exc, self.config.token) from None
        if isinstance(markup, ReplyKeyboardMarkup):
            self._keyboard_chats.add(chat_id)
        elif isinstance(markup, ReplyKeyboardRemove):
            self._keyboard_chats.discard(chat_id)
        return SendResult(provider_id=str(ids[-1]), raw={"message_ids": ids, "chat_id": chat_id})

    @staticmethod
    def _chat_id(recipient: str) -> int:
        scheme, _, value = recipient.partition(":")
        try:
            if scheme != "telegram":
                raise ValueError(scheme)
            return int(value)
        except ValueError:
            raise SendError("not a telegram recipient", retryable=False, code="recipient") from None

    def _render(self, chat_id: int, text: str, buttons: tuple[Button, ...]) -> tuple[str, Any]:
        """The text and reply_markup for `buttons` (numbered text where Telegram cannot)."""
        if not buttons:
            remove = chat_id in self._keyboard_chats
            return text, ReplyKeyboardRemove() if remove else None
        if any(b.kind in ("location", "contact") for b in buttons):
            # One reply_markup per message: a reply keyboard. Reply-kind buttons become plain
            # keyboard buttons (their title comes back as text); links go into the text.
            rows: list[list[KeyboardButton]] = []
            links: list[str] = []
            for b in buttons:
                if b.kind == "location":
                    rows.append([KeyboardButton(b.title, request_location=True)])
                elif b.kind == "contact":
                    rows.append([KeyboardButton(b.title, request_contact=True)])
                elif b.kind == "url":
                    links.append(f"{b.title}: {b.payload}")
                else:
                    rows.append([KeyboardButton(b.title)])
            full = "\n".join([text, *links]) if links else text
            return full, ReplyKeyboardMarkup(rows, one_time_keyboard=True, resize_keyboard=True)
        if any(b.kind == "reply" and len(b.payload.encode()) > MAX_CALLBACK_DATA for b in buttons):
            log.warning("callback payload over 64 bytes: buttons sent as numbered text")
            lines = [f"{i}. {b.title}" + (f": {b.payload}" if b.kind == "url" else "")
                     for i, b in enumerate(buttons, 1)]
            return "\n".join([text, *lines]), None
        inline = [
            [InlineKeyboardButton(b.title, url=b.payload)] if b.kind == "url"
            else [InlineKeyboardButton(b.title, callback_data=b.payload)]
            for b in buttons
        ]
        return text, InlineKeyboardMarkup(inline)

    async def answer_callback(self, callback_query_id: str, text: str | None = None) -> None:
        """answerCallbackQuery: stops the spinner on the pressed inline button."""
        bot = await self.bot()
        try:
            await bot.answer_callback_query(callback_query_id, text=text)
        except Exception as exc:
            raise send_error(exc, self.config.token) from None

    # --- media -----------------------------------------------------------------------------

    async def fetch_media(self, attachment: Attachment, max_bytes: int) -> tuple[bytes, str | None]:
        """getFile(file_id), then stream the file from base_file_url within the size limits."""
        limit = min(max_bytes, BOT_FILE_LIMIT)
        if attachment.size is not None and attachment.size > limit:
            raise SendError("media too large", retryable=False, code="media_too_large")
        bot = await self.bot()
        try:
            tg_file = await bot.get_file(attachment.url)
        except Exception as exc:
            raise send_error(exc, self.config.token) from None
        if tg_file.file_size is not None and tg_file.file_size > limit:
            raise SendError("media too large", retryable=False, code="media_too_large")
        url = str(tg_file.file_path or "")
        prefix = bot.base_file_url + "/"
        # Only ever download from the configured Bot API file host (never log the URL: it
        # contains the token).
        if not url.startswith(prefix) or ".." in url[len(prefix):]:
            raise SendError("unexpected file path", retryable=False, code="file_path")
        # The file URL contains the token: no redirects, and never logged.
        # The Bot API host is the operator's own choice (a self-hosted server may be internal).
        data, _ = await download(self.http, url, limit, allowed=lambda _url, hop: hop == 0,
                                 max_redirects=0,
                                 trusted_hosts=[urlsplit(prefix).hostname or ""])
        mime = attachment.mime or mimetypes.guess_type(url[len(prefix):])[0]
        return data, mime

