"""Zalo OA access/refresh token rotation through the injected TokenStore, and the OA API's
error-code policy.

Docs: https://developers.zalo.me/docs/official-account/bat-dau/xac-thuc-va-uy-quyen-cho-ung-dung-new
The access token lives ~25 h (`expires_in` is a *string*, "90000"); the refresh token lives
~3 months and is single-use: every refresh returns a new pair and kills the old refresh token.
So a rotated pair is stored (optimistic compare-and-swap on "_version") before it is used, and
a process that loses the race re-reads the winner's pair instead of retrying with a dead token.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from pydantic import Field

from channels.base import ChannelConfig, ChannelError, SendError, TokenStore, utcnow

log = logging.getLogger("paht.channels.zalo")

# OA API error policy (https://developers.zalo.me/docs/official-account/phu-luc/ma-loi):
# -216/-220 (and -124) invalid/expired token → refresh and retry once; -230/-232 outside the
# interaction window; -32 rate limit (per minute), -200 generic send failure, -211 out of quota.
TOKEN_CODES = frozenset({-216, -220, -124})
WINDOW_CODES = frozenset({-230, -232})
RETRY_CODES: dict[int, float | None] = {-32: 60.0, -200: None, -211: 3600.0}
_ICT = timedelta(hours=7)  # Asia/Ho_Chi_Minh, no DST

TOKEN_KEY = "zalo:oa_tokens"  # noqa: S105 - a store key, not a secret


class ZaloConfig(ChannelConfig):
    """PAHT_ZALO_* (the OA's app, its secrets, the seed token pair and the API bases)."""

    app_id: str = Field(validation_alias="zalo_app_id")
    app_secret: str = Field(validation_alias="zalo_app_secret")
    oa_secret: str = Field(validation_alias="zalo_oa_secret")
    access_token: str = Field(validation_alias="zalo_access_token")
    refresh_token: str = Field(validation_alias="zalo_refresh_token")
    api_base: str = Field(validation_alias="zalo_api_base")
    oauth_base: str = Field(validation_alias="zalo_oauth_base")

    @property
    def enabled(self) -> bool:
        """Needs the app id and secret (signature, token refresh) and an initial token."""
        return bool(self.app_id and self.app_secret and (self.access_token or self.refresh_token))


class TokenError(ChannelError):
    """The token pair could not be refreshed (`retryable` false: an admin must re-consent)."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class InMemoryTokenStore:
    """A TokenStore for one process (used when none is injected, and by tests)."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    async def get(self, key: str) -> Mapping[str, Any] | None:
        """Return the stored value (with "_version") or None."""
        value = self.data.get(key)
        return dict(value) if value is not None else None

    async def put(self, key: str, value: Mapping[str, Any], expected_version: int | None) -> bool:
        """Replace the value if its version still equals `expected_version` (None: absent)."""
        current = self.data.get(key)
        current_version = current["_version"] if current is not None else None
        if current_version != expected_version:
            return False
        stored = {k: v for k, v in value.items() if k != "_version"}
        stored["_version"] = (current_version or 0) + 1
        self.data[key] = stored
        return True


class ZaloTokens:
    """Keeps the OA token pair fresh; every process shares it through the TokenStore."""

    def __init__(self, config: ZaloConfig, http: aiohttp.ClientSession | None,
                 store: TokenStore | None) -> None:
        self.config = config
        self.http = http
        self.store: TokenStore = store if store is not None else InMemoryTokenStore()
        self._lock = asyncio.Lock()

    def _seed_mark(self) -> str:
        """A fingerprint of the settings' pair (never the tokens themselves)."""
        seed = f"{self.config.access_token}|{self.config.refresh_token}"
        return hashlib.sha256(seed.encode()).hexdigest()[:16]

    async def current(self) -> Mapping[str, Any]:
        """The stored pair, seeded from the config (PAHT_ZALO_ACCESS_TOKEN/_REFRESH_TOKEN).

        When an admin re-consents and puts a *new* pair in the settings, it replaces the
        stored one once (the stored pair remembers which settings pair it descends from).
        """
        record = await self.store.get(TOKEN_KEY)
        mark = self._seed_mark()
        has_seed = bool(self.config.access_token or self.config.refresh_token)
        if record is not None and (record.get("seed") in (mark, None) or not has_seed):
            return record
        seed = {
            "access_token": self.config.access_token,
            "refresh_token": self.config.refresh_token,
            "expires_at": None,  # unknown: the first refresh_if_expiring() rotates it
            "seed": mark,
        }
        version = record.get("_version") if record is not None else None
        if await self.store.put(TOKEN_KEY, seed, version):
            log.info("zalo tokens: stored the pair from settings")
        else:
            log.info("zalo tokens: another process seeded the store first")
        record = await self.store.get(TOKEN_KEY)
        return record if record is not None else seed

    async def access_token(self) -> str:
        """The access token to call the OA API with."""
        return str((await self.current()).get("access_token") or "")

    async def refresh(self, stale_access_token: str | None = None) -> Mapping[str, Any]:
        """Rotate the pair; if `stale_access_token` was already replaced, use the new one."""
        async with self._lock:
            record = await self.current()
            if stale_access_token is not None and record.get("access_token") != stale_access_token:
                return record  # someone (this process or another) rotated meanwhile
            used = str(record.get("refresh_token") or "")
            if not used:
                raise TokenError("no zalo refresh token", retryable=False)
            try:
                fresh = await self._call_oauth(used)
                fresh["seed"] = record.get("seed")
            except TokenError:
                # Our refresh token may be dead because another process just rotated it.
                again = await self.current()
                if again.get("refresh_token") != used:
                    log.info("zalo tokens: refresh lost to another process; using its pair")
                    return again
                raise
            if await self.store.put(TOKEN_KEY, fresh, record.get("_version")):
                log.info("zalo tokens rotated", extra={"expires_at": fresh["expires_at"]})
                return await self.current()
            # Lost the compare-and-swap: the stored pair is the live one.
            log.warning("zalo tokens: store changed during refresh; re-reading")
            return await self.current()

    async def refresh_if_expiring(self, margin_s: float = 3600) -> bool:
        """Rotate when the access token expires within `margin_s` (or its expiry is unknown)."""
        record = await self.current()
        expires_at = record.get("expires_at")
        if expires_at is not None and float(expires_at) - time.time() > margin_s:
            return False
        before = record.get("access_token")
        after = await self.refresh(stale_access_token=str(before or ""))
        return after.get("access_token") != before

    async def _call_oauth(self, refresh_token: str) -> dict[str, Any]:
        url = self.config.oauth_base.rstrip("/") + "/v4/oa/access_token"
        form = {"app_id": self.config.app_id, "grant_type": "refresh_token",
                "refresh_token": refresh_token}
        headers = {"secret_key": self.config.app_secret}
        if self.http is None:
            raise TokenError("no HTTP session", retryable=True)
        try:
            async with self.http.post(url, data=form, headers=headers) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TokenError(f"zalo oauth unreachable: {type(exc).__name__}",
                             retryable=True) from exc
        try:
            data = json.loads(text, parse_int=str)
        except ValueError:
            data = None
        if status != 200 or not isinstance(data, dict):
            raise TokenError(f"zalo oauth http {status}", retryable=status >= 500)
        if not data.get("access_token") or not data.get("refresh_token"):
            # e.g. {"error": -14014, "error_name": "Invalid refresh token", …}
            raise TokenError(f"zalo oauth error {data.get('error')}: {data.get('error_name')}",
                             retryable=False)
        try:
            expires_in = float(data.get("expires_in") or 90000)
        except (TypeError, ValueError):
            expires_in = 90000.0
        return {
            "access_token": str(data["access_token"]),
            "refresh_token": str(data["refresh_token"]),
            "expires_at": time.time() + expires_in,
        }


def oa_error_code(data: Mapping[str, Any]) -> int:
    """The `error` field of an OA API answer (0 = success; errors come with HTTP 200)."""
    try:
        return int(data.get("error", 0))
    except (TypeError, ValueError):
        return -1


def _seconds_until_6am_ict(now: datetime | None = None) -> float:
    now = (now or utcnow()).astimezone(UTC)
    local = now + _ICT
    six = local.replace(hour=6, minute=0, second=0, microsecond=0)
    if local >= six:
        six += timedelta(days=1)
    return (six - local).total_seconds()


def classify_oa_error(code: int, data: Mapping[str, Any]) -> SendError:
    """An OA API error (HTTP 200, error != 0) as a SendError with its retry policy."""
    msg = f"zalo error {code}: {data.get('message', '')}"[:300]
    label = str(code)
    if code in WINDOW_CODES:
        return SendError(msg, retryable=False, window_closed=True, code=label)
    if code in TOKEN_CODES:
        # Still rejected after a fresh token: the OA revoked the app; an admin must act.
        return SendError(msg, retryable=False, code=label)
    if code == -234:
        return SendError(msg, retryable=True, retry_after=_seconds_until_6am_ict(), code=label)
    if code in RETRY_CODES:
        return SendError(msg, retryable=True, retry_after=RETRY_CODES[code], code=label)
    # -201 bad parameter, -213 not following, -217 blocked, -227 inactive, -244 restricted,
    # -100 expired attachment …: retrying the same payload cannot succeed.
    return SendError(msg, retryable=False, code=label)
