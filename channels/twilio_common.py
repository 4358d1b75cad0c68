"""Shared Twilio plumbing for the SMS and voice channels: signatures, forms, REST client, media.

Provider docs:
- Webhook security: https://www.twilio.com/docs/usage/webhooks/webhooks-security
- Request validator: twilio/twilio-python `twilio/request_validator.py`
- Messaging webhook: https://www.twilio.com/docs/messaging/guides/webhook-request
- Media download: https://www.twilio.com/docs/messaging/api/media-resource

Twilio signs `public URL + sorted(name + value)` with HMAC-SHA1 of the account auth token. The
URL is the one *Twilio* called, so behind a proxy/TLS terminator we rebuild it from
`PAHT_PUBLIC_BASE_URL` + path + query instead of trusting the Host we see (PROTOCOLS §4).
"""

from __future__ import annotations

import base64
import contextvars
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
from multidict import MultiDict
from pydantic import Field
from twilio.base.exceptions import TwilioRestException
from twilio.http import AsyncHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.request_validator import (
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)
from twilio.rest import Client

from channels.base import (
    Attachment,
    ChannelConfig,
    MalformedError,
    RawRequest,
    SendError,
    SignatureError,
)
from channels.download import download
from channels.text import nfc

FORM_TYPE = "application/x-www-form-urlencoded"
TWIML_TYPE = "application/xml"
MAX_MEDIA_REDIRECTS = 5
# Hosts a media URL may come from; Twilio then redirects to a short-lived CDN link.
TWILIO_HOST_SUFFIXES = (".twilio.com",)
# Where Twilio's 30x for media/recordings may lead (signed, short-lived links: no auth sent).
REDIRECT_HOST_SUFFIXES = (".twilio.com", ".twiliocdn.com", ".amazonaws.com")

# Placeholders Twilio puts in From when the caller ID is withheld: keypad spellings of
# ANONYMOUS, RESTRICTED, BLOCKED and UNAVAIL (twilio.com/docs/voice/twiml#callerid-values).
WITHHELD_CALLER_IDS = frozenset({"+266696687", "+7378742833", "+2562533", "+8656696"})

# The headers of the last REST answer in this task, for Retry-After on 429 (the twilio
# exception does not carry headers). A ContextVar: concurrent sends do not see each other's.
_last_headers: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "twilio_last_headers", default=None
)


class TwilioConfig(ChannelConfig):
    """The Twilio account (PAHT_TWILIO_*) and the public URL Twilio calls us on."""

    account_sid: str = Field(validation_alias="twilio_account_sid")
    auth_token: str = Field(validation_alias="twilio_auth_token")
    api_base: str = Field(validation_alias="twilio_api_base")
    public_base_url: str = Field(validation_alias="public_base_url")

    @property
    def enabled(self) -> bool:
        """Needs the account SID and auth token."""
        return bool(self.account_sid and self.auth_token)

    def public(self, path: str) -> str:
        """Absolute public URL of one of our paths."""
        return self.public_base_url.rstrip("/") + path


def public_url(config: TwilioConfig, request: RawRequest) -> str:
    """The URL Twilio called: public base + the path and raw query of what we received."""
    parts = urlsplit(request.url)
    base = config.public_base_url.rstrip("/")
    url = base + (parts.path or "/")
    if parts.query:
        url += "?" + parts.query
    return url


def is_form(request: RawRequest) -> bool:
    """True if the body is declared as a URL-encoded form (or undeclared)."""
    ctype = (request.header("Content-Type") or FORM_TYPE).split(";")[0].strip().lower()
    return ctype == FORM_TYPE


def form_params(request: RawRequest) -> MultiDict[str]:
    """Decode the form body (UTF-8, blank values kept) into a MultiDict, raw (not NFC)."""
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedError("form body is not UTF-8") from exc
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text),
                          encoding="utf-8", errors="strict")
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedError("body is not a URL-encoded form") from exc
    return MultiDict(pairs)


def require_form(request: RawRequest) -> MultiDict[str]:
    """The webhook's form params; MalformedError on an empty or non-form body."""
    if not request.body.strip():
        raise MalformedError("empty body")
    if not is_form(request):
        raise MalformedError("not a form body")
    return form_params(request)


def params_for_audit(params: MultiDict[str]) -> dict[str, str]:
    """A JSON-ready copy of the form (NFC; Twilio never repeats a name, the last wins)."""
    return {key: nfc(value) for key, value in params.items()}


def verify_signature(config: TwilioConfig, request: RawRequest) -> None:
    """Check X-Twilio-Signature against the public URL; SignatureError(403) otherwise."""
    token = config.auth_token
    signature = request.header(SIGNATURE_HEADER)
    if not token:
        raise SignatureError("twilio auth token not configured", status=403)
    if not signature:
        raise SignatureError("missing X-Twilio-Signature", status=403)
    url = public_url(config, request)
    params: Any
    if is_form(request):
        try:
            params = form_params(request)
        except MalformedError:
            params = {}
    elif "bodySHA256=" in url:
        params = request.body.decode("utf-8", errors="replace")  # JSON webhooks: hash in URL
    else:
        params = {}
    algorithm = get_signature_algorithm(request.header(SIGNATURE_SETTINGS_HEADER))
    if not RequestValidator(token).validate(url, params, signature, algorithm):
        raise SignatureError("X-Twilio-Signature does not match", status=403)


def sign(token: str, url: str, params: Mapping[str, str] | MultiDict[str]) -> str:
    """The X-Twilio-Signature Twilio would send (used by tests and the fake API)."""
    return RequestValidator(token).compute_signature(url, params)


def tel_urn(number: str | None) -> str | None:
    """'tel:+84…' for an E.164 caller; None for anonymous/client/SIP callers."""
    if not number:
        return None
    number = number.strip()
    if number in WITHHELD_CALLER_IDS:
        return None
    if number.startswith("+") and number[1:].isdigit() and len(number) > 4:
        return "tel:" + number
    return None


def number_of(urn: str) -> str:
    """The phone number in a 'tel:' URN; SendError (not retryable) for anything else."""
    if not urn.startswith("tel:") or len(urn) <= 4:
        raise SendError(f"not a phone number URN: {urn[:8]}…", retryable=False, code="bad_urn")
    return urn[4:]


class SessionHttpClient(AsyncHttpClient):
    """twilio's async HTTP client interface on top of the app's shared aiohttp session."""

    def __init__(self, session: aiohttp.ClientSession | None, timeout: float = 15.0) -> None:
        super().__init__(logging.getLogger("twilio.http_client"), True, timeout)
        self.session = session

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - twilio HttpClient signature
        allow_redirects: bool = False,
    ) -> TwilioResponse:
        """Make one request; the caller (twilio's Version) raises on error statuses."""
        headers = dict(headers or {})
        if auth:
            headers["Authorization"] = basic_auth(auth[0], auth[1])
        # Repeated parameters (MediaUrl=…&MediaUrl=…) arrive as lists: flatten to pairs.
        form: list[tuple[str, str]] | None = None
        if data is not None:
            form = []
            for key, value in data.items():
                values = value if isinstance(value, list | tuple) else [value]
                form.extend((key, str(item)) for item in values)
        client_timeout = aiohttp.ClientTimeout(total=timeout or self.timeout)
        session = self.session
        own = session is None or session.closed
        if own:
            session = aiohttp.ClientSession()
        assert session is not None
        try:
            async with session.request(
                method.upper(), url, data=form, headers=headers,
                params={k: str(v) for k, v in params.items()} if params else None,
                timeout=client_timeout, allow_redirects=allow_redirects,
            ) as resp:
                text = await resp.text()
                _last_headers.set(dict(resp.headers))
                return TwilioResponse(resp.status, text, resp.headers)
        finally:
            if own:
                await session.close()


def basic_auth(login: str, password: str) -> str:
    """An HTTP Basic Authorization header value (AccountSid:AuthToken)."""
    token = base64.b64encode(f"{login}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def make_client(config: TwilioConfig, http: aiohttp.ClientSession | None) -> Client:
    """A twilio.rest.Client whose API domain is `config.api_base` (a fake in tests)."""
    client = Client(config.account_sid, config.auth_token, http_client=SessionHttpClient(http))
    # twilio 9: every REST resource builds its URL from the domain's `base_url` at call time.
    client.api.base_url = config.api_base.rstrip("/")
    return client


def send_error(exc: BaseException) -> SendError:
    """Map a REST/network failure to a SendError with its retry policy."""
    if isinstance(exc, TwilioRestException):
        status = int(exc.status or 0)
        code = str(exc.code) if exc.code is not None else str(status)
        retry_after: float | None = None
        headers = _last_headers.get() or {}
        value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
        if value:
            try:
                retry_after = float(value)
            except ValueError:
                retry_after = None
        if status == 429 or status >= 500:
            return SendError(f"twilio {status} ({code})", retryable=True,
                             retry_after=retry_after, code=code)
        # 400-level: 21211 invalid 'To', 21610 unsubscribed (STOP), 21408 region disabled …
        return SendError(f"twilio {status} ({code}): {exc.msg}", retryable=False, code=code)
    if isinstance(exc, aiohttp.ClientError | TimeoutError | OSError):
        return SendError(f"twilio unreachable: {type(exc).__name__}", retryable=True,
                         code="network")
    return SendError(f"twilio send failed: {type(exc).__name__}", retryable=False)


def media_kind(mime: str | None) -> str:
    """Attachment kind from a MIME type."""
    major = (mime or "").split("/")[0].lower()
    return major if major in ("image", "audio", "video") else "file"


def _host_ok(host: str, configured: str, suffixes: tuple[str, ...]) -> bool:
    host = host.lower()
    return bool(host) and (
        host == configured or host == "api.twilio.com" or host.endswith(suffixes)
    )


async def fetch_twilio_media(
    config: TwilioConfig, http: aiohttp.ClientSession | None, attachment: Attachment,
    max_bytes: int,
) -> tuple[bytes, str | None]:
    """Download Twilio media/recordings with Basic auth, following Twilio's CDN redirect.

    Only URLs on api.twilio.com, *.twilio.com or the configured API host are fetched; the
    credentials go with that first request only, never to the CDN the redirect points at.
    """
    base = urlsplit(config.api_base)
    configured = (base.hostname or "").lower()

    def allowed(url: str, hop: int) -> bool:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        suffixes = TWILIO_HOST_SUFFIXES if hop == 0 else REDIRECT_HOST_SUFFIXES
        if parts.scheme not in ("https", "http") or not _host_ok(host, configured, suffixes):
            return False
        # Plain http only when the configured API base itself is http (the local fake in tests).
        return parts.scheme == "https" or (base.scheme == "http" and host == configured)

    auth = {"Authorization": basic_auth(config.account_sid, config.auth_token)}
    data, mime = await download(http, attachment.url, max_bytes, allowed=allowed,
                                first_headers=auth, max_redirects=MAX_MEDIA_REDIRECTS,
                                trusted_hosts=[configured])
    return data, mime or attachment.mime
