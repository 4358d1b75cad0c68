"""Who may read stored citizen media, and the web chat photo upload checks.

Stored names are random (gateway/workers/media.py), and still nothing under `/media/` is
public: a request needs either a logged-in console operator (the `paht_media` cookie that
login sets next to the console session, path /media) or a signed, expiring link
(`?exp=<unix>&sig=<hmac>`) that Open311, the forwarder and the web chat uploader get from
`signed_media_url`. Every answer carries `nosniff` and a sandboxing CSP, so a stored file is
never run as a page. Uploads are checked by their magic bytes, not the declared type.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from aiohttp import web
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.settings import Settings
from store.repos import events as events_repo

log = logging.getLogger("paht.media")

MEDIA_PREFIX = "/media/"
MEDIA_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "private, max-age=3600",
    "Referrer-Policy": "no-referrer",
}
# The first bytes of the photo types the web chat accepts.
MAGIC = {
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/webp": (b"RIFF",),  # and "WEBP" at offset 8, checked below
}


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode() or b"paht", b"media-url", hashlib.sha256).digest()


def media_signature(secret: str, path: str, expires: int) -> str:
    """The HMAC that lets one stored path be read until `expires` (unix seconds)."""
    return hmac.new(_key(secret), f"{path}|{expires}".encode(), hashlib.sha256).hexdigest()[:32]


def signed_media_url(settings: Settings, path: str, base: str = "",
                     ttl_hours: float | None = None, now: float | None = None) -> str:
    """`{base}/media/{path}?exp=…&sig=…`, valid for `ttl_hours` (default media_url_ttl_hours).

    The expiry is rounded up to the hour, so one report's link is the same on every read of a
    feed within that hour.
    """
    hours = settings.media_url_ttl_hours if ttl_hours is None else ttl_hours
    expires = int(((now or time.time()) + hours * 3600) // 3600 + 1) * 3600
    query = urlencode({"exp": expires, "sig": media_signature(settings.session_secret, path,
                                                              expires)})
    return f"{base.rstrip('/')}{MEDIA_PREFIX}{path}?{query}"


def signature_ok(secret: str, path: str, exp: str, sig: str, now: float | None = None) -> bool:
    """True when (exp, sig) was issued for `path` and has not expired."""
    if not exp.isdigit() or len(exp) > 12 or int(exp) < (now or time.time()):
        return False
    expected = media_signature(secret, path, int(exp))
    return hmac.compare_digest(expected.encode(), sig.encode("utf-8", "replace"))


UPLOAD_COOKIE = "paht_chat_media"  # path /media/web: the uploader sees its own photos
_UPLOAD_RE = re.compile(r"web/[a-f0-9]{2}/[a-f0-9]{32,64}\.(?:jpg|png|webp)")


def owner_tag(secret: str, sid: str) -> str:
    """The first characters of an upload's name: ties the file to its chat session."""
    return hmac.new(_key(secret), f"upload-owner|{sid}".encode(), hashlib.sha256).hexdigest()[:8]


def uploaded_by(secret: str, sid: str, rel: str) -> bool:
    """True when `rel` is a web chat upload of session `sid`."""
    name = rel.rsplit("/", 1)[-1]
    return bool(sid) and rel.startswith("web/") and name.startswith(owner_tag(secret, sid))


def stored_path_of(url: str, secret: str) -> str | None:
    """The stored path of a web chat upload URL (`/media/web/…`, or any signed `/media/…`)."""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or not parts.path.startswith(MEDIA_PREFIX):
        return None
    path = parts.path[len(MEDIA_PREFIX):]
    if not parts.query:
        return path if _UPLOAD_RE.fullmatch(path) else None
    query = dict(pair.split("=", 1) for pair in parts.query.split("&") if "=" in pair)
    if not signature_ok(secret, path, query.get("exp", ""), query.get("sig", "")):
        return None
    return path


def safe_file(root: Path, rel: str) -> Path | None:
    """The file `rel` under `root`, or None for anything odd (NUL, '..', absolute, missing)."""
    if not rel or "\x00" in rel or "\\" in rel or rel.startswith("/") or len(rel) > 300:
        return None
    if any(part in ("", ".", "..") for part in rel.split("/")):
        return None
    try:
        root = root.resolve()
        path = (root / rel).resolve()
    except (OSError, ValueError):
        return None
    if root not in path.parents or not path.is_file():
        return None
    return path


def magic_ok(mime: str, head: bytes) -> bool:
    """True when the bytes start like the declared photo type (HTML sent as PNG is not)."""
    prefixes = MAGIC.get(mime)
    if not prefixes or not head.startswith(prefixes):
        return False
    return mime != "image/webp" or head[8:12] == b"WEBP"


def with_media_headers(response: web.StreamResponse) -> web.StreamResponse:
    """nosniff, a sandboxing CSP, no referrer."""
    for name, value in MEDIA_HEADERS.items():
        response.headers[name] = value
    return response


class UploadQuota:
    """Web chat photo quotas per hour: files per session, bytes per client IP (in memory)."""

    def __init__(self, per_session: int, bytes_per_ip: int, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_session = per_session
        self.bytes_per_ip = bytes_per_ip
        self.clock = clock
        self._files: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._bytes: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def _get(self, table: OrderedDict[str, tuple[float, int]], key: str) -> int:
        now = self.clock()
        started, used = table.get(key, (now, 0))
        if now - started >= 3600:
            started, used = now, 0
        table[key] = (started, used)
        table.move_to_end(key)
        while len(table) > 100_000:
            table.popitem(last=False)
        return used

    def _add(self, table: OrderedDict[str, tuple[float, int]], key: str, amount: int) -> None:
        started, used = table.get(key, (self.clock(), 0))
        table[key] = (started, used + amount)

    def allows(self, sid: str, ip: str, size: int) -> bool:
        """Whether one more upload of `size` bytes fits both quotas (spends nothing)."""
        files_ok = self.per_session <= 0 or self._get(self._files, sid) < self.per_session
        bytes_ok = self.bytes_per_ip <= 0 or \
            self._get(self._bytes, ip) + size <= self.bytes_per_ip
        return files_ok and bytes_ok

    def spend(self, sid: str, ip: str, size: int) -> None:
        """Count one stored upload."""
        self._add(self._files, sid, 1)
        self._add(self._bytes, ip, size)


async def sweep_uploads(settings: Settings, sessions: async_sessionmaker[AsyncSession],
                        older_than_s: float | None = None, now: float | None = None) -> int:
    """Delete web chat uploads older than upload_orphan_hours that no message references."""
    root = settings.resolved_media_dir() / "web"
    limit = (settings.upload_orphan_hours * 3600.0) if older_than_s is None else older_than_s
    cutoff = (now or time.time()) - limit

    def old_files() -> list[Path]:
        if not root.is_dir():
            return []
        return [p for p in root.glob("*/*") if p.is_file() and p.stat().st_mtime < cutoff]

    candidates = await asyncio.to_thread(old_files)
    if not candidates:
        return 0
    async with sessions() as session:
        used = await events_repo.referenced_names(session, [p.name for p in candidates])
    doomed = [p for p in candidates if p.name not in used]
    for path in doomed:
        with contextlib.suppress(OSError):
            await asyncio.to_thread(path.unlink)
    if doomed:
        log.info("unreferenced uploads deleted", extra={"count": len(doomed)})
    return len(doomed)
