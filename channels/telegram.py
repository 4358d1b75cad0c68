"""Telegram bot channel: webhook updates in, Bot API calls out via python-telegram-bot v22.

Provider docs: https://core.telegram.org/bots/api (Update, Message, setWebhook, getFile) and
https://core.telegram.org/bots/api#setwebhook for the `X-Telegram-Bot-Api-Secret-Token` header.
PTB runs inside our aiohttp app without its own web server or updater: the builder gets
`.updater(None)` and PTB's Bot only makes the outbound HTTP calls (base URLs from settings, so
tests talk to tests/fakes/telegram_api.py). Updates are parsed from the raw JSON dicts by
`parse_update`, shared by the webhook route and long polling (channels/telegram_polling.py).

`InboundMessage.raw` is the Update as Telegram sent it, plus a `"paht"` dict when the channel
has something to say about it: `{"callback_query_id": ...}` for button presses (answer it with
`TelegramChannel.answer_callback`) and `{"foreign_contact": true}` / `{"invalid_phone": true}`
when a shared contact was not usable.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import mimetypes
import re
import unicodedata
import warnings
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, ClassVar

import aiohttp
import phonenumbers
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
    GeoPoint,
    InboundMessage,
    MalformedError,
    OutboundMessage,
    RawRequest,
    SendError,
    SendResult,
    SignatureError,
    from_epoch,
    utcnow,
)

log = logging.getLogger("paht.channels.telegram")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (a header name)
MAX_TEXT = 4096  # sendMessage limit, counted in UTF-16 code units
MAX_CALLBACK_DATA = 64  # bytes
BOT_FILE_LIMIT = 20 * 1024 * 1024  # the cloud Bot API serves files up to 20 MB
ALLOWED_UPDATES = ("message", "edited_message", "callback_query")
_COMMAND_AT = re.compile(r"^(/[A-Za-z0-9_]+)@[A-Za-z0-9_]+(?=\s|$)")


def api_urls(api_base: str) -> tuple[str, str]:
    """PTB's base_url and base_file_url ("…/bot{token}", "…/file/bot{token}") for an API base."""
    base = api_base.rstrip("/")
    return f"{base}/bot{{token}}", f"{base}/file/bot{{token}}"


def build_application(settings: Any) -> Application[Any, Any, Any, Any, Any, Any]:
    """A PTB Application with no updater and no job queue, pointed at settings' API base."""
    base_url, base_file_url = api_urls(settings.telegram_api_base)
    builder: ApplicationBuilder[Any, Any, Any, Any, Any, Any] = ApplicationBuilder()
    return (
        builder.token(settings.telegram_token)
        .base_url(base_url)
        .base_file_url(base_file_url)
        .updater(None)
        .job_queue(None)
        .build()
    )


def scrub(text: str, token: str) -> str:
    """Remove the bot token from an error text (PTB puts it in InvalidToken messages)."""
    return text.replace(token, "<token>") if token else text


def normalize_phone(raw: str, region: str = "VN") -> str | None:
    """A shared phone number in E.164, or None when it is not a valid number."""
    cleaned = raw.strip()
    # Telegram sends the owner's number without "+" ("84905123456"); try it as international
    # first, then as a national number of `region` ("0905123456").
    candidates = [cleaned] if cleaned.startswith(("+", "0")) else ["+" + cleaned, cleaned]
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return None


def _nfc(text: str) -> str:
    # Some phones send Vietnamese in NFD (decomposed diacritics); store NFC.
    return unicodedata.normalize("NFC", text)


def _name(user: Mapping[str, Any] | None) -> str | None:
    if not user:
        return None
    full = " ".join(p for p in (user.get("first_name"), user.get("last_name")) if p)
    return _nfc(full) or None


def _kind_for_mime(mime: str | None, default: str) -> str:
    major = (mime or "").split("/", 1)[0]
    return {"image": "image", "audio": "audio", "video": "video"}.get(major, default)


def _attachments(msg: Mapping[str, Any]) -> list[Attachment]:
    """Media of a message; `url` holds the file_id (fetch_media resolves it with getFile)."""
    out: list[Attachment] = []
    photos = msg.get("photo")
    if isinstance(photos, list) and photos:
        best = photos[-1]  # PhotoSize array is ascending: the last one is the largest
        out.append(Attachment("image", str(best["file_id"]), "image/jpeg", best.get("file_size")))
    if voice := msg.get("voice"):  # voice notes are OGG/Opus
        out.append(Attachment("audio", str(voice["file_id"]),
                              voice.get("mime_type") or "audio/ogg", voice.get("file_size")))
    if audio := msg.get("audio"):
        out.append(Attachment("audio", str(audio["file_id"]), audio.get("mime_type"),
                              audio.get("file_size"), audio.get("file_name")))
    if video := msg.get("video"):
        out.append(Attachment("video", str(video["file_id"]), video.get("mime_type") or "video/mp4",
                              video.get("file_size"), video.get("file_name")))
    if note := msg.get("video_note"):
        out.append(Attachment("video", str(note["file_id"]), "video/mp4", note.get("file_size")))
    # An animation (GIF) also carries a `document` copy; like stickers it is not evidence.
    if (doc := msg.get("document")) and not msg.get("animation"):
        mime = doc.get("mime_type")  # photos sent "as file" arrive as image/* documents
        out.append(Attachment(_kind_for_mime(mime, "file"), str(doc["file_id"]), mime,
                              doc.get("file_size"), doc.get("file_name")))
    return out


def _location(msg: Mapping[str, Any]) -> GeoPoint | None:
    venue = msg.get("venue")
    if venue and venue.get("location"):
        loc = venue["location"]
        label = ", ".join(p for p in (venue.get("title"), venue.get("address")) if p)
        return GeoPoint(float(loc["latitude"]), float(loc["longitude"]), _nfc(label) or None)
    loc = msg.get("location")
    if loc:
        return GeoPoint(float(loc["latitude"]), float(loc["longitude"]))
    return None


def _button_title(query: Mapping[str, Any], data: str) -> str:
    """The title of the inline button that carried `data` (so transcripts read naturally)."""
    markup = (query.get("message") or {}).get("reply_markup") or {}
    for row in markup.get("inline_keyboard") or []:
        for button in row:
            if button.get("callback_data") == data:
                return _nfc(str(button.get("text", "")))
    return ""


def _from_callback(update: Mapping[str, Any], update_id: int) -> list[InboundMessage]:
    query = update["callback_query"]
    data = query.get("data")
    if data is None:  # game callbacks and inline-mode buttons carry no data
        return []
    user = query.get("from") or {}
    origin = query.get("message") or {}
    chat_id = (origin.get("chat") or {}).get("id", user.get("id"))
    if chat_id is None:
        raise MalformedError("callback_query without chat or from")
    raw = dict(update)
    raw["paht"] = {"callback_query_id": str(query.get("id", ""))}
    return [InboundMessage(
        channel="telegram", external_id=str(update_id), sender=f"telegram:{chat_id}",
        text=_button_title(query, str(data)),
        received_at=utcnow(),  # a callback_query has no timestamp of its own
        sender_name=_name(user), kind="postback", postback=str(data),
        reply_to=str(origin["message_id"]) if "message_id" in origin else None, raw=raw,
    )]


def parse_update(update: Mapping[str, Any], region: str = "VN") -> list[InboundMessage]:
    """Messages of one Update dict (webhook body or getUpdates item); [] for ignored kinds."""
    update_id = update.get("update_id")
    if not isinstance(update_id, int) or isinstance(update_id, bool):
        raise MalformedError("update_id missing or not an integer")
    try:
        if "callback_query" in update:
            return _from_callback(update, update_id)
        if "message" in update:
            msg, kind, external_id = update["message"], "message", str(update_id)
        elif "edited_message" in update:
            msg, kind, external_id = update["edited_message"], "edit", f"edit:{update_id}"
        else:
            # my_chat_member, channel posts, polls, inline queries…: not citizen reports
            return []
        return _from_message(update, msg, kind, external_id, region)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MalformedError(f"unexpected update shape: {type(exc).__name__}") from exc


def _from_message(update: Mapping[str, Any], msg: Mapping[str, Any], kind: str,
                  external_id: str, region: str) -> list[InboundMessage]:
    chat_id = msg["chat"]["id"]
    user = msg.get("from") or {}
    text = _nfc(str(msg.get("text") or msg.get("caption") or ""))
    # "/start@PahtBot" in groups: the dialog recognises commands by their bare name.
    text = _COMMAND_AT.sub(r"\1", text)
    attachments = _attachments(msg)
    location = _location(msg)
    flags: dict[str, Any] = {}
    contact_phone: str | None = None
    if contact := msg.get("contact"):
        # Only the sender's own card counts: a forwarded card would attach someone else's
        # number to this citizen.
        if contact.get("user_id") is not None and contact.get("user_id") == user.get("id"):
            contact_phone = normalize_phone(str(contact.get("phone_number", "")), region)
            if contact_phone is None:
                flags["invalid_phone"] = True
        else:
            flags["foreign_contact"] = True
        if contact_phone and kind == "message":
            kind = "contact"
    if not text and not attachments and location is None and "contact" not in msg:
        return []  # stickers, dice, service messages (chat photo, pinned…)
    raw = dict(update)
    if flags:
        raw["paht"] = flags
    date = msg.get("edit_date") if kind == "edit" and msg.get("edit_date") else msg["date"]
    reply = msg.get("reply_to_message") or {}
    return [InboundMessage(
        channel="telegram", external_id=external_id, sender=f"telegram:{chat_id}", text=text,
        received_at=from_epoch(date), attachments=tuple(attachments), location=location,
        contact_phone=contact_phone, sender_name=_name(user), kind=kind,
        reply_to=str(reply["message_id"]) if "message_id" in reply else None, raw=raw,
    )]


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Split `text` into chunks of at most `limit` UTF-16 units, at line or word breaks."""
    chunks: list[str] = []
    rest = text
    while _units(rest) > limit:
        cut = _prefix_len(rest, limit)
        window = rest[:cut]
        brk = max(window.rfind("\n"), window.rfind(" "))
        if brk > cut // 2:
            cut = brk + 1
        chunks.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest or not chunks:
        chunks.append(rest)
    return chunks


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _prefix_len(text: str, limit: int) -> int:
    units = 0
    for i, ch in enumerate(text):
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > limit:
            return i
    return len(text)


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


class TelegramChannel(Channel):
    """Telegram Bot API via webhook (or long polling in development)."""

    name: ClassVar[str] = "telegram"

    def __init__(self, settings: Any, http: Any = None, tokens: Any = None) -> None:
        super().__init__(settings, http, tokens)
        self._application: Application[Any, Any, Any, Any, Any, Any] | None = None
        self._lock = asyncio.Lock()
        self._keyboard_chats: set[int] = set()  # chats that currently show a reply keyboard

    @classmethod
    def enabled(cls, settings: Any) -> bool:
        """Enabled when both the bot token and the webhook secret are set."""
        return bool(settings.telegram_token and settings.telegram_secret)

    # --- inbound --------------------------------------------------------------------------

    def verify(self, request: RawRequest) -> None:
        """Check the secret_token Telegram echoes in X-Telegram-Bot-Api-Secret-Token."""
        expected = str(self.settings.telegram_secret or "")
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
        return parse_update(update, self._region())

    def _region(self) -> str:
        return str(getattr(self.settings, "default_region", "VN") or "VN")

    # --- the bot ---------------------------------------------------------------------------

    async def application(self) -> Application[Any, Any, Any, Any, Any, Any]:
        """The initialised PTB Application (built on first use; initialize() calls getMe)."""
        async with self._lock:
            if self._application is None:
                self._application = build_application(self.settings)
            await self._application.initialize()  # a no-op once it succeeded
            return self._application

    async def bot(self) -> Any:
        """The initialised PTB bot (telegram.ext.ExtBot)."""
        try:
            return (await self.application()).bot
        except Exception as exc:
            raise send_error(exc, self.settings.telegram_token) from None

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
        chunks = split_text(text)
        ids: list[int] = []
        try:
            for i, chunk in enumerate(chunks):
                last = i == len(chunks) - 1
                sent = await bot.send_message(chat_id=chat_id, text=chunk,
                                              reply_markup=markup if last else None)
                ids.append(sent.message_id)
        except Exception as exc:
            raise send_error(exc, self.settings.telegram_token) from None
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
            raise send_error(exc, self.settings.telegram_token) from None

    # --- media -----------------------------------------------------------------------------

    async def fetch_media(self, attachment: Attachment, max_bytes: int) -> tuple[bytes, str | None]:
        """getFile(file_id), then stream the file from base_file_url within the size limits."""
        limit = min(max_bytes, BOT_FILE_LIMIT)
        if attachment.size is not None and attachment.size > limit:
            raise SendError("media too large", retryable=False, code="too_large")
        bot = await self.bot()
        try:
            tg_file = await bot.get_file(attachment.url)
        except Exception as exc:
            raise send_error(exc, self.settings.telegram_token) from None
        if tg_file.file_size is not None and tg_file.file_size > limit:
            raise SendError("media too large", retryable=False, code="too_large")
        url = str(tg_file.file_path or "")
        prefix = bot.base_file_url + "/"
        # Only ever download from the configured Bot API file host (never log the URL: it
        # contains the token).
        if not url.startswith(prefix) or ".." in url[len(prefix):]:
            raise SendError("unexpected file path", retryable=False, code="file_path")
        data = await self._download(url, limit)
        mime = attachment.mime or mimetypes.guess_type(url[len(prefix):])[0]
        return data, mime

    async def _download(self, url: str, limit: int) -> bytes:
        session = self.http if self.http is not None else aiohttp.ClientSession()
        try:
            async with session.get(url, allow_redirects=False) as resp:
                if resp.status != 200:
                    raise SendError(f"file download answered {resp.status}",
                                    retryable=resp.status >= 500, code=str(resp.status))
                buf = bytearray()
                async for chunk in resp.content.iter_chunked(65536):
                    buf.extend(chunk)
                    if len(buf) > limit:  # file_size lied or was absent: stop reading
                        raise SendError("media too large", retryable=False, code="too_large")
                return bytes(buf)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise SendError(f"file download failed: {type(exc).__name__}",
                            retryable=True, code="network") from None
        finally:
            if session is not self.http:
                await session.close()


def __getattr__(name: str) -> Any:
    # `from channels.telegram import set_webhook, run_polling` (CLI helpers) without an
    # import cycle: they live in channels/telegram_polling.py.
    if name in ("set_webhook", "run_polling"):
        from channels import telegram_polling

        return getattr(telegram_polling, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
