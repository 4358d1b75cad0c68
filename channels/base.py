"""The channel contract: the types every channel module speaks, and the registry.

See ../shared/DESIGN.md §3. A channel knows only these types and its provider's API —
never the database. `verify` and `parse` are pure functions of a `RawRequest` so they are
tested from fixture tables without a server; only `send` (and media fetches) do network I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol


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
class InboundMessage:
    """One citizen message, whatever channel it came from."""

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


class Channel:
    """Base class of every channel. Subclasses set `name` and implement the methods."""

    name: ClassVar[str] = ""
    # Most providers POST JSON; Twilio posts forms.
    max_body_bytes: ClassVar[int] = 1_000_000

    def __init__(self, settings: Any, http: Any = None, tokens: TokenStore | None = None) -> None:
        self.settings = settings
        self.http = http  # aiohttp.ClientSession, injected by the app
        self.tokens = tokens
        # Citizen-facing texts of this channel (config/messages.vi.toml [<name>]), set by the app.
        self.messages: Mapping[str, str] = {}

    @classmethod
    def enabled(cls, settings: Any) -> bool:
        """True when the settings hold the secrets this channel needs."""
        return True

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

    async def fetch_media(self, attachment: Attachment, max_bytes: int) -> tuple[bytes, str | None]:
        """Download an attachment (worker side, after the ack). Returns (bytes, mime)."""
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


class ChannelRegistry:
    """Explicit name → channel class mapping (no import-time magic)."""

    def __init__(self, classes: Mapping[str, type[Channel]]) -> None:
        self.classes = dict(classes)

    def names(self) -> list[str]:
        """All channel names known to the registry."""
        return sorted(self.classes)
