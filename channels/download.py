"""Bounded reads and media downloads: the one place that streams bytes with a size limit.

Provider CDNs (Meta, Zalo, Twilio, the Telegram Bot API file host) are fetched with
redirects followed by hand so every hop is checked against the channel's allowed hosts, and
the stream stops at `max_bytes` whatever Content-Length claimed. Failures are `SendError`s
carrying their retry policy (429/5xx/network retry; 4xx, too large and bad hosts do not).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver

from channels.base import SendError

CHUNK = 65536
REDIRECTS = frozenset({301, 302, 303, 307, 308})
# (url, hop) -> may we GET it? hop 0 is the URL the provider gave, later hops are redirects.
UrlCheck = Callable[[str, int], bool]


class BodyTooLarge(Exception):
    """A stream went past its byte limit; `size` is how much had been read by then."""

    def __init__(self, size: int) -> None:
        super().__init__(f"body over the limit after {size} bytes")
        self.size = size


async def read_limited(content: aiohttp.StreamReader, limit: int) -> bytes:
    """Read a request or response body to its end; BodyTooLarge as soon as it passes `limit`."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in content.iter_chunked(CHUNK):
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(size)
        chunks.append(chunk)
    return b"".join(chunks)


def host_allowed(url: str, suffixes: Iterable[str], extra_hosts: Iterable[str]) -> bool:
    """https on a provider host (or a sub-domain of it), or any scheme on a test-added host."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host:
        return False
    for extra in extra_hosts:
        extra_host, _, extra_port = extra.lower().partition(":")
        if host == extra_host and (not extra_port or str(parts.port) == extra_port):
            return parts.scheme in ("http", "https")
    if parts.scheme != "https":
        return False
    return any(host == s or host.endswith("." + s) for s in suffixes)


def hosts_check(suffixes: Iterable[str], extra_hosts: Iterable[str] = ()) -> UrlCheck:
    """A UrlCheck that applies `host_allowed` to every hop."""
    suffixes, extra_hosts = tuple(suffixes), tuple(extra_hosts)
    return lambda url, hop: host_allowed(url, suffixes, extra_hosts)


def public_address(ip: str) -> bool:
    """A globally routable unicast address (not loopback, private, link-local, reserved…)."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    return addr.is_global and not addr.is_multicast


class PublicOnlyResolver(AbstractResolver):
    """Resolves names at connect time and drops private, loopback and link-local answers.

    A host name that passed the allow-list can still be pointed at an internal address by its
    DNS (rebinding): checking the name is not enough, the address connected to is checked here.
    `trusted` hosts (the operator's own configured API base, e.g. a self-hosted Bot API server
    or the local fakes in tests) are exempt.
    """

    def __init__(self, trusted: Iterable[str] = ()) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._trusted = frozenset(h.lower() for h in trusted)

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[Any]:
        """The public answers for `host`; OSError when there is none."""
        answers = await self._inner.resolve(host, port, family)
        if host.lower() in self._trusted:
            return list(answers)
        public = [a for a in answers if public_address(str(a["host"]))]
        if not public:
            raise OSError(f"{host} resolves to no public address")
        return public

    async def close(self) -> None:
        """Release the inner resolver."""
        await self._inner.close()


def _trusted_hosts(hosts: Iterable[str]) -> frozenset[str]:
    return frozenset(h.lower().rsplit(":", 1)[0] if h.count(":") == 1 else h.lower()
                     for h in hosts)


async def download(
    http: aiohttp.ClientSession | None,
    url: str,
    max_bytes: int,
    *,
    allowed: UrlCheck,
    first_headers: Mapping[str, str] | None = None,
    max_redirects: int = 3,
    trusted_hosts: Iterable[str] = (),
) -> tuple[bytes, str | None]:
    """GET `url`, following up to `max_redirects` redirects (each hop checked by `allowed`),
    stopping at `max_bytes`. `first_headers` (credentials) go with the first request only,
    never to the CDN a redirect points at. Every hop must connect to a public address, except
    on `trusted_hosts` (the configured API host). Returns (bytes, MIME type without parameters).
    """
    trusted = _trusted_hosts(trusted_hosts)
    # Its own session: the resolver that refuses internal addresses belongs to the connector.
    timeout = http.timeout if http is not None else aiohttp.ClientTimeout(total=60)
    session = aiohttp.ClientSession(
        timeout=timeout, connector=aiohttp.TCPConnector(resolver=PublicOnlyResolver(trusted)))
    try:
        for hop in range(max_redirects + 1):
            if not allowed(url, hop):
                raise SendError("media host not allowed", retryable=False, code="media_host")
            host = (urlsplit(url).hostname or "").lower()
            if _is_ip(host) and host not in trusted and not public_address(host):
                # An address literal never reaches the resolver: check it here.
                raise SendError("media host not allowed", retryable=False, code="media_host")
            headers = dict(first_headers) if first_headers and hop == 0 else None
            async with session.get(url, headers=headers, allow_redirects=False) as resp:
                if resp.status in REDIRECTS and "Location" in resp.headers:
                    url = urljoin(url, resp.headers["Location"])
                    continue
                if resp.status != 200:
                    # CDN links expire: 403/404/410 will not get better by retrying.
                    raise SendError(f"media http {resp.status}",
                                    retryable=resp.status == 429 or resp.status >= 500,
                                    code=f"media_http_{resp.status}")
                if resp.content_length is not None and resp.content_length > max_bytes:
                    raise SendError("media too large", retryable=False, code="media_too_large")
                try:
                    data = await read_limited(resp.content, max_bytes)
                except BodyTooLarge:
                    raise SendError("media too large", retryable=False,
                                    code="media_too_large") from None
                ctype = resp.headers.get("Content-Type", "")
                return data, ctype.split(";")[0].strip().lower() or None
        raise SendError("too many media redirects", retryable=False, code="media_redirects")
    except aiohttp.ClientConnectorError as exc:
        if "no public address" in str(exc.os_error):  # PublicOnlyResolver refused it
            raise SendError("media host resolves to an internal address", retryable=False,
                            code="media_host") from exc
        raise SendError(f"media download failed: {type(exc).__name__}", retryable=True,
                        code="media_network") from exc
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SendError(f"media download failed: {type(exc).__name__}", retryable=True,
                        code="media_network") from exc
    finally:
        await session.close()


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
