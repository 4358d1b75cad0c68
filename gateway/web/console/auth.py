"""Console sessions: HMAC-signed cookies, CSRF tokens, roles and the `protected` wrapper.

A session cookie is ``base64url(json) "." base64url(hmac_sha256(key, json))`` where the key is
derived from ``settings.session_secret``. It carries the operator id, the issue time, the CSRF
token and a fingerprint of the password hash (a password reset ends every session). Logging out
is recorded as an OperatorAction "logout"; a cookie issued before the operator's last logout is
refused, so a stolen copy of a logged-out cookie is useless.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from gateway.keys import SERVICES
from gateway.web.console.request_keys import CSRF, OPERATOR
from store.models import Operator
from store.repos import operators as operators_repo

COOKIE = "paht_console"
LOGIN_COOKIE = "paht_console_login"
# The same signed session, scoped to /media: stored citizen media open only for operators.
MEDIA_COOKIE = "paht_media"
SESSION_SECONDS = 12 * 3600
ROLE_RANK = {"operator": 1, "supervisor": 2, "admin": 3}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Console pages only load their own assets; nothing from a CDN or another origin.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; "
        "script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class Session:
    """The decoded session cookie."""

    operator_id: int
    issued_at: float
    csrf: str
    fingerprint: str


def _key(secret: str, purpose: str) -> bytes:
    return hmac.new(secret.encode() or b"paht", purpose.encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(secret: str, purpose: str, payload: dict[str, Any]) -> str:
    """Serialise and sign `payload` for the cookie named by `purpose`."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    mac = hmac.new(_key(secret, purpose), body, hashlib.sha256).digest()
    return f"{_b64(body)}.{_b64(mac)}"


def unsign(secret: str, purpose: str, value: str | None) -> dict[str, Any] | None:
    """The payload of a signed value, or None when it is missing, altered or malformed."""
    if not value or "." not in value:
        return None
    body_part, _, mac_part = value.partition(".")
    try:
        body, mac = _unb64(body_part), _unb64(mac_part)
    except (ValueError, TypeError):
        return None
    expected = hmac.new(_key(secret, purpose), body, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, mac):
        return None
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def fingerprint(op: Operator) -> str:
    """A short digest of the password hash: changes when the password is reset."""
    return hashlib.sha256(op.password_hash.encode()).hexdigest()[:16]


def secure_cookies(request: web.Request) -> bool:
    """Cookies get the Secure flag when the gateway is published over HTTPS."""
    return request.app[SERVICES].settings.public_base_url.lower().startswith("https://")


def set_session(response: web.StreamResponse, request: web.Request, op: Operator) -> Session:
    """Start a session for `op` on `response`."""
    session = Session(op.id or 0, time.time(), secrets.token_urlsafe(24), fingerprint(op))
    value = sign(request.app[SERVICES].settings.session_secret, "session", {
        "o": session.operator_id, "i": session.issued_at, "c": session.csrf,
        "p": session.fingerprint,
    })
    response.set_cookie(COOKIE, value, max_age=SESSION_SECONDS, path="/console",
                        httponly=True, samesite="Lax", secure=secure_cookies(request))
    response.set_cookie(MEDIA_COOKIE, value, max_age=SESSION_SECONDS, path="/media",
                        httponly=True, samesite="Lax", secure=secure_cookies(request))
    return session


def clear_session(response: web.StreamResponse) -> None:
    """Remove the session cookie."""
    response.del_cookie(COOKIE, path="/console")
    response.del_cookie(MEDIA_COOKIE, path="/media")


def read_session(request: web.Request, cookie: str = COOKIE) -> Session | None:
    """The valid, unexpired session of the request (in `cookie`), if any."""
    secret = request.app[SERVICES].settings.session_secret
    data = unsign(secret, "session", request.cookies.get(cookie))
    if data is None:
        return None
    try:
        session = Session(int(data["o"]), float(data["i"]), str(data["c"]), str(data["p"]))
    except (KeyError, TypeError, ValueError):
        return None
    if not 0 <= time.time() - session.issued_at <= SESSION_SECONDS:
        return None
    return session


async def load_operator(request: web.Request, session: Session) -> Operator | None:
    """The active operator behind `session`, unless the session was ended or invalidated."""
    services = request.app[SERVICES]
    async with services.sessions() as db:
        op = await db.get(Operator, session.operator_id)
        if op is None or not op.active or fingerprint(op) != session.fingerprint:
            return None
        last_logout = await operators_repo.last_logout_at(db, session.operator_id)
    if last_logout is not None and last_logout.timestamp() >= session.issued_at:
        return None
    return op


def same_origin(request: web.Request) -> bool:
    """False when the browser says the request comes from another site."""
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin is None
    return origin.split("://", 1)[-1].rstrip("/") == request.host


async def csrf_ok(request: web.Request, expected: str) -> bool:
    """True when the form field `csrf` (or header X-CSRF-Token) matches the session's token."""
    token = request.headers.get("X-CSRF-Token")
    if token is None:
        form = await request.post()
        value = form.get("csrf")
        token = value if isinstance(value, str) else None
    return (bool(token) and secrets.compare_digest(str(token).encode("utf-8", "replace"),
                                                   expected.encode())
            and same_origin(request))


def _to_login(request: web.Request) -> web.HTTPException:
    target = request.path_qs if request.method == "GET" else "/console/"
    from urllib.parse import quote

    return web.HTTPSeeOther(f"/console/login?next={quote(target, safe='')}")


def protected(role: str = "operator") -> Callable[[Handler], Handler]:
    """Require a logged-in operator of at least `role`; POSTs also need the CSRF token."""
    need = ROLE_RANK[role]

    def wrap(handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            session = read_session(request)
            op = await load_operator(request, session) if session else None
            if session is None or op is None:
                raise _to_login(request)
            if ROLE_RANK.get(op.role, 0) < need:
                return _refuse(request, op, session, "Bạn không có quyền truy cập trang này.")
            if request.method == "POST" and not await csrf_ok(request, session.csrf):
                return _refuse(request, op, session, "Biểu mẫu đã hết hạn hoặc không hợp lệ "
                               "(thiếu mã chống giả mạo). Vui lòng tải lại trang rồi thử lại.")
            request[OPERATOR] = op
            request[CSRF] = session.csrf
            return with_headers(await handler(request))

        guarded.__name__ = handler.__name__
        guarded.__doc__ = handler.__doc__
        return guarded

    return wrap


def _refuse(request: web.Request, op: Operator, session: Session, message: str
            ) -> web.StreamResponse:
    """A 403 page in the console's layout."""
    from gateway.web.console.render import render

    return with_headers(render(request, "error.html", status=403, op=op, csrf=session.csrf,
                               message=message))


def with_headers(response: web.StreamResponse) -> web.StreamResponse:
    """Add the console's security headers to a response."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def operator_of(request: web.Request) -> Operator:
    """The operator set by `protected`."""
    op: Operator = request[OPERATOR]
    return op


def now() -> datetime:
    """Now, in UTC (one place to read the clock)."""
    return datetime.now(UTC)
