"""The channel contract: the types every channel module speaks, its traits and abilities.

See ../shared/DESIGN.md §3. A channel knows only these types and its provider's API —
never the database. `verify` and `parse` are pure functions of a `RawRequest` so they are
tested from fixture tables without a server; only `send` (and media fetches) do network I/O.
What a channel is like (`ChannelTraits`) and what it can do beyond the contract (the
`runtime_checkable` protocols below) are declared here; channels/registry.py builds the set.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar, runtime_checkable

import aiohttp
from pydantic import BaseModel, ConfigDict


class ChannelError(Exception):
    """Base class of errors a channel raises."""


class SignatureError(ChannelError):
    """The request's signature is missing or wrong: the route answers `status`."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


class MalformedError(ChannelError):
    """The body could not be parsed: the route answers 400."""


class SendError(ChannelError):
    """An outbound call failed. `retryable` tells the outbox whether to try again.

    `retry_after` (seconds) is the provider's hint when it gave one; `window_closed` means the
    provider refused because the reply window has expired (Messenger 24 h, Zalo -230): the
    caller should fall back to another channel (SMS) or wait for the citizen's next message.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        window_closed: bool = False,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.window_closed = window_closed
        self.code = code


@dataclass(frozen=True, slots=True)
class RawRequest:
    """An HTTP request as the provider sent it, built once from aiohttp's request."""

    method: str
    url: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        """Case-insensitive header lookup."""
        lname = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lname:
                return value
        return None


@dataclass(frozen=True, slots=True)
class GeoPoint:
    """A WGS84 point; `address` is the provider's label when it sent one (venue, Zalo)."""

    lat: float
    lon: float
    address: str | None = None


@dataclass(frozen=True, slots=True)
class Attachment:
    """A media item. `url` is what the worker downloads (or a provider file id for Telegram)."""

    kind: str  # image | audio | video | file
    url: str
    mime: str | None = None
    size: int | None = None
    name: str | None = None


def _empty_raw() -> Mapping[str, Any]:
    return {}


@dataclass(frozen=True, slots=True)
class MessageMeta:
    """What the channel concluded about a message, apart from the provider's own event.

    `InboundMessage.raw` stays the untouched provider event (the audit trail); these are the
    flags the pipeline acts on.
    """

    silent: bool = False  # a call or voice note with nothing (audible) in it
    transcribed: bool = False  # `text` is a live transcript (Media Streams), not typed text
    confidence: float | None = None  # of that transcript
    stt_error: str | None = None  # the live recognizer failed: audio kept, transcribe later
    callback_id: str | None = None  # a pressed button to acknowledge (Telegram callback_query)
    foreign_contact: bool = False  # a shared contact card that is not the sender's own
    invalid_phone: bool = False  # the sender's own contact card with an unusable number


NO_META = MessageMeta()


# Control characters other than tab and newline (C0, DEL, C1) and the XML non-characters: a
# citizen never means them, and one "\x0b" would make the public XML feed not well-formed.
_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]")


def strip_controls(text: str) -> str:
    """`text` without control characters (tab, newline and carriage return kept)."""
    return _CONTROLS.sub("", text) if text else text


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One citizen message, whatever channel it came from (control characters stripped)."""

    channel: str  # "facebook" | "zalo" | "telegram" | "sms" | "voice" | "web"
    external_id: str  # provider id: mid, msg_id, update_id, MessageSid, RecordingSid
    sender: str  # URN: "facebook:<psid>", "zalo:<uid>", "telegram:<id>", "tel:+84...", "web:<id>"
    text: str
    received_at: datetime  # UTC, from the provider's timestamp
    attachments: tuple[Attachment, ...] = ()
    location: GeoPoint | None = None
    contact_phone: str | None = None  # E.164 when the citizen shared it
    sender_name: str | None = None  # display name when the provider gives one (never logged)
    kind: str = "message"  # message | command | postback | contact | edit | follow | unfollow
    reply_to: str | None = None  # provider id of the message this one answers
    postback: str | None = None  # button payload (quick reply, postback, callback_query)
    raw: Mapping[str, Any] = field(default_factory=_empty_raw)
    meta: MessageMeta = NO_META

    def __post_init__(self) -> None:
        # At ingest, for every channel: what a citizen typed reaches no feed or page raw.
        for name in ("text", "sender_name", "postback"):
            value = getattr(self, name)
            if isinstance(value, str) and _CONTROLS.search(value):
                object.__setattr__(self, name, strip_controls(value))


@dataclass(frozen=True, slots=True)
class Button:
    """A reply option. `payload` comes back as `InboundMessage.postback` when pressed."""

    title: str
    payload: str
    kind: str = "reply"  # reply | location | contact | url


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """A message to one citizen on one channel."""

    channel: str
    recipient: str  # the URN the message came from ("telegram:123", "tel:+8490...")
    text: str
    buttons: tuple[Button, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    reply_to: str | None = None
    # When the citizen last wrote to us, for providers with a reply window (Messenger, Zalo).
    last_inbound_at: datetime | None = None
    metadata: Mapping[str, Any] = field(default_factory=_empty_raw)


@dataclass(frozen=True, slots=True)
class SendResult:
    """What the provider answered when it accepted an outbound message."""

    provider_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=_empty_raw)


@dataclass(frozen=True, slots=True)
class Ack:
    """The HTTP answer to the provider after the messages are durable."""

    status: int = 200
    body: bytes = b"ok"
    content_type: str = "text/plain"


@dataclass(frozen=True, slots=True)
class ChannelTraits:
    """What a channel is like, declared by its class: the gateway asks these, never names."""

    label: str  # short badge in the console ("Zalo", "FB")
    title: str  # full name in reports and the console ("Zalo OA")
    # How long after the citizen's last message the provider still accepts replies
    # (None: no window).
    reply_window: timedelta | None
    # Renders like SMS: answers cost the citizen, buttons become numbered options, texts short.
    sms_like: bool
    # The citizen chats and can press confirm (buttons or a typed answer in a thread).
    conversational: bool
    # The citizen speaks: the message's words are a transcript of its audio, never typed text.
    spoken: bool = False
    # Citizens' own clients (a browser) call the webhook, not a provider's few servers: the
    # gateway limits them per IP as well as per sender.
    direct_clients: bool = False


class ChannelConfig(BaseModel):
    """A channel's typed settings, read from the gateway's flat settings object.

    Each field names its flat setting in `validation_alias` (the `PAHT_*` names are fixed by
    DESIGN §6) and has no default: a renamed setting fails at start-up, never falls back.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    @classmethod
    def from_settings(cls, settings: BaseModel) -> Self:
        """Validate this channel's fields out of the gateway settings."""
        return cls.model_validate(settings.model_dump())

    @property
    def enabled(self) -> bool:
        """True when the settings hold the secrets this channel needs."""
        return True


class TokenStore(Protocol):
    """Durable key/value storage for provider credentials that rotate (Zalo's token pair).

    The gateway implements it on the database; channels never import the store.
    """

    async def get(self, key: str) -> Mapping[str, Any] | None:
        """Return the stored value or None."""
        ...

    async def put(self, key: str, value: Mapping[str, Any], expected_version: int | None) -> bool:
        """Replace the value atomically if its version still equals `expected_version`."""
        ...


# Optional abilities. A channel has one when it defines the method; the registry checks each
# once, at start-up, with isinstance (ChannelSet), so nobody probes with getattr.


@runtime_checkable
class GetHandshake(Protocol):
    """Answers GET on its webhook path (Facebook's hub.challenge subscription check)."""

    def handle_get(self, request: RawRequest) -> Ack:
        """The handshake answer."""
        ...


@runtime_checkable
class StartStop(Protocol):
    """Holds resources between app start and shutdown (an SDK client, a connection pool)."""

    async def start(self) -> None:
        """Open what the channel needs (called once, at app start)."""
        ...

    async def stop(self) -> None:
        """Release it (called once, at shutdown)."""
        ...


@runtime_checkable
class TokenRefresher(Protocol):
    """Rotates provider credentials before they expire (Zalo's OA token pair)."""

    async def refresh_if_expiring(self) -> bool:
        """Rotate when close to expiry; True when it rotated."""
        ...


@runtime_checkable
class ButtonAnswerer(Protocol):
    """Acknowledges a pressed button (Telegram's answerCallbackQuery stops the spinner)."""

    async def answer_callback(self, callback_id: str) -> None:
        """Acknowledge the press `callback_id` (MessageMeta.callback_id)."""
        ...


@runtime_checkable
class MediaFetcher(Protocol):
    """Downloads attachments on the worker side, after the ack."""

    async def fetch_media(self, attachment: Attachment, max_bytes: int) -> tuple[bytes, str | None]:
        """The attachment's bytes and MIME type, at most `max_bytes`."""
        ...


ConfigT = TypeVar("ConfigT", bound=ChannelConfig)


class Channel(Generic[ConfigT]):
    """Base class of every channel: `name`, `traits`, `config_model` and the four methods."""

    name: ClassVar[str] = ""
    traits: ClassVar[ChannelTraits]
    config_model: ClassVar[type[ChannelConfig]] = ChannelConfig
    # Most providers POST JSON; Twilio posts forms.
    max_body_bytes: ClassVar[int] = 1_000_000

    def __init__(
        self,
        config: ConfigT,
        *,
        http: aiohttp.ClientSession | None = None,
        tokens: TokenStore | None = None,
        texts: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.http = http  # aiohttp.ClientSession, injected by the app
        self.tokens = tokens
        # Citizen-facing texts of this channel: the [<name>] table of config/messages.vi.toml.
        self.texts: Mapping[str, str] = dict(texts or {})

    @property
    def session(self) -> aiohttp.ClientSession:
        """The injected HTTP session (SendError, retryable, while there is none)."""
        if self.http is None:
            raise SendError("no HTTP session", retryable=True, code="network")
        return self.http

    @classmethod
    def from_settings(
        cls,
        settings: BaseModel,
        *,
        http: aiohttp.ClientSession | None = None,
        tokens: TokenStore | None = None,
        texts: Mapping[str, str] | None = None,
    ) -> Self:
        """Build the channel from the gateway's flat settings (its config validated first)."""
        config: Any = cls.config_model.from_settings(settings)
        return cls(config, http=http, tokens=tokens, texts=texts)

    @classmethod
    def enabled(cls, settings: BaseModel) -> bool:
        """True when `settings` hold the secrets this channel needs (see ChannelConfig)."""
        return cls.config_model.from_settings(settings).enabled

    def verify(self, request: RawRequest) -> None:
        """Raise SignatureError unless the request is authentic."""
        raise NotImplementedError

    def parse(self, request: RawRequest) -> list[InboundMessage]:
        """Turn a verified request into messages; raise MalformedError on a bad body."""
        raise NotImplementedError

    def ack(self, request: RawRequest, messages: list[InboundMessage]) -> Ack:
        """The answer once `messages` are persisted."""
        return Ack()

    async def send(self, message: OutboundMessage) -> SendResult:
        """Deliver `message` to the citizen; raise SendError on failure."""
        raise NotImplementedError


def utcnow() -> datetime:
    """The current time in UTC, timezone-aware."""
    return datetime.now(UTC)


def from_epoch(value: int | float | str, millis: bool = False) -> datetime:
    """A provider timestamp (seconds or milliseconds, possibly a string) as a UTC datetime."""
    try:
        number = int(value) if isinstance(value, str) else value
        if millis:
            number = number / 1000
        return datetime.fromtimestamp(number, UTC)
    except (OverflowError, OSError, ValueError, TypeError) as exc:
        # A forged or corrupted body can carry any number; it is not a provider time.
        raise MalformedError(f"timestamp out of range: {value!r}") from exc
