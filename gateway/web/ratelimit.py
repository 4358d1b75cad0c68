"""Rate limits for the webhooks: per client IP (before verify) and per sender (after parse).

Token buckets: a key may spend `per_minute` requests at once and earns them back evenly over a
minute. Memory is bounded: buckets live in an LRU of at most `max_keys` entries.

Why an allow-list for IPs: Meta, Zalo, Telegram and Twilio deliver every citizen's message
from a handful of egress addresses. A per-IP limit low enough to stop an attacker would
throttle a whole province's Facebook traffic during a flood, so provider ranges belong in
PAHT_RATE_LIMIT_IP_ALLOWLIST; their traffic is still counted (paht_ratelimit_total with
outcome "allowlisted"), never silently exempt. Behind a reverse proxy the client address is
the proxy's: list it in PAHT_RATE_LIMIT_TRUSTED_PROXIES so X-Forwarded-For is believed (only
from those addresses — anyone can send the header).

Other surfaces (`limited_response`): the Media Streams upgrade, `/chat/*`, the web chat
webhook (by IP; by session through the sender limit), `/console/login` (per IP and one global
bucket, checked before any password is hashed) and Open311 POST each have their own per-IP
bucket, so a flood on one does not spend another's budget.

Per sender: a request is refused (429, the provider retries later) only when every message
in it comes from senders over their limit, so a flood from one citizen cannot hold back a
neighbour's message that Meta batched into the same request.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiohttp import web

from gateway.settings import Settings

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_JSON_DEPTH = 64  # real provider bodies nest < 10 levels
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def json_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when brackets outside strings nest deeper than `limit` (checked before parsing).

    A cheap count first: only bodies with more than `limit` brackets are scanned.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    for match in _TOKENS.finditer(body):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif token in (b"]", b"}"):
            depth -= 1
    return False


def parse_networks(value: str | Iterable[str]) -> tuple[IpNetwork, ...]:
    """Comma-separated IPs/CIDRs → networks; a bad entry is a configuration error."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(ipaddress.ip_network(item.strip(), strict=False)
                 for item in items if item.strip())


def _in(address: str, networks: tuple[IpNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_ip(remote: str | None, forwarded_for: str | None,
              trusted_proxies: tuple[IpNetwork, ...]) -> str:
    """The client address: X-Forwarded-For's last untrusted hop, only behind a trusted proxy."""
    remote = remote or "unknown"
    if not forwarded_for or not trusted_proxies or not _in(remote, trusted_proxies):
        return remote
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _in(hop, trusted_proxies):
            return hop
    return hops[0] if hops else remote


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class TokenBuckets:
    """Per-key token buckets: `per_minute` burst, refilled at per_minute/60 per second."""

    def __init__(self, per_minute: int, *, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.rate = per_minute / 60.0
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        """0 per minute switches the limit off."""
        return self.per_minute > 0

    def _bucket(self, key: str) -> _Bucket:
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(float(self.per_minute), now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(float(self.per_minute),
                                bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
        return bucket

    def available(self, key: str) -> bool:
        """Whether `key` may spend a token now (spends nothing)."""
        return not self.enabled or self._bucket(key).tokens >= 1.0

    def take(self, key: str) -> bool:
        """Spend one token for `key`; False (nothing spent) when it has none left."""
        if not self.enabled:
            return True
        bucket = self._bucket(key)
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def retry_after(self, key: str) -> int:
        """Whole seconds until `key` has a token again (at least 1)."""
        if not self.enabled:
            return 1
        missing = max(0.0, 1.0 - self._bucket(key).tokens)
        return max(1, int(missing / self.rate + 0.999))

    def __len__(self) -> int:
        return len(self._buckets)


class RateLimits:
    """The gateway's two limits and the IP allow-list, built from settings."""

    def __init__(self, per_ip: int, per_sender: int, *, ip_allowlist: str = "",
                 trusted_proxies: str = "", clock: Callable[[], float] = time.monotonic) -> None:
        self.ip = TokenBuckets(per_ip, clock=clock)
        self.sender = TokenBuckets(per_sender, clock=clock)
        self.allowlist = parse_networks(ip_allowlist)
        self.trusted_proxies = parse_networks(trusted_proxies)
        self.clock = clock
        # Per-IP buckets of the other surfaces; "login_all" is one global key.
        self.surfaces: dict[str, TokenBuckets] = {}

    def add_surface(self, name: str, per_minute: int) -> None:
        """A separate per-IP bucket set for one surface (0 per minute: no limit)."""
        self.surfaces[name] = TokenBuckets(per_minute, clock=self.clock)

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimits:
        """Read the rate_limit_* settings (the allow-list and proxies may be empty)."""
        limits = cls(settings.rate_limit_per_ip, settings.rate_limit_per_sender,
                     ip_allowlist=settings.rate_limit_ip_allowlist,
                     trusted_proxies=settings.rate_limit_trusted_proxies)
        limits.add_surface("voice_stream", settings.rate_limit_per_ip)
        limits.add_surface("chat", settings.rate_limit_chat_per_ip)
        limits.add_surface("chat_session", settings.rate_limit_chat_per_session)
        limits.add_surface("login", settings.rate_limit_login_per_ip)
        limits.add_surface("login_all", settings.rate_limit_login_global)
        limits.add_surface("open311", settings.rate_limit_open311_per_ip)
        return limits

    def check_surface(self, surface: str, key: str) -> tuple[str, int]:
        """('ok' | 'allowlisted' | 'limited', retry_after) for one request of `surface`."""
        buckets = self.surfaces.get(surface)
        if buckets is None or not buckets.enabled:
            return "ok", 0
        if surface not in ("login_all", "chat_session") and self.allowlist \
                and _in(key, self.allowlist):
            return "allowlisted", 0
        if buckets.take(key):
            return "ok", 0
        return "limited", buckets.retry_after(key)

    def check_ip(self, ip: str) -> tuple[str, int]:
        """('ok' | 'allowlisted' | 'limited', retry_after seconds) for one request from `ip`."""
        if not self.ip.enabled:
            return "ok", 0
        if self.allowlist and _in(ip, self.allowlist):
            return "allowlisted", 0
        if self.ip.take(ip):
            return "ok", 0
        return "limited", self.ip.retry_after(ip)

    def check_senders(self, senders: list[str]) -> tuple[bool, int]:
        """(allowed, retry_after): refused only when every sender is over its limit.

        When allowed, each message spends a token of its sender (a sender already over its
        limit goes negative no further than zero: its message rides along with the others').
        """
        if not self.sender.enabled or not senders:
            return True, 0
        if not any(self.sender.available(s) for s in senders):
            return False, min(self.sender.retry_after(s) for s in senders)
        for s in senders:
            self.sender.take(s)
        return True, 0


LIMITS = web.AppKey("rate_limits", RateLimits)


def request_ip(request: web.Request) -> str:
    """The client address of `request` (X-Forwarded-For only from trusted proxies)."""
    limits = request.app.get(LIMITS)
    proxies = limits.trusted_proxies if limits is not None else ()
    return client_ip(request.remote, request.headers.get("X-Forwarded-For"), proxies)


def too_many(retry_after: int) -> web.Response:
    """429 with Retry-After."""
    return web.Response(status=429, text="too many requests",
                        headers={"Retry-After": str(max(1, retry_after))})


def limited_response(request: web.Request, surface: str, key: str | None = None
                     ) -> web.Response | None:
    """A 429 when the client (or `key`) is over the surface's limit, else None (spent one)."""
    limits = request.app.get(LIMITS)
    if limits is None:
        return None
    outcome, retry_after = limits.check_surface(surface, key or request_ip(request))
    return too_many(retry_after) if outcome == "limited" else None
