"""Login and logout pages. The login form carries its own signed CSRF cookie (no session yet)."""

from __future__ import annotations

import secrets
import weakref
from urllib.parse import urlsplit

from aiohttp import web

from gateway.domain.accounts import attempt_login
from gateway.domain.login_guard import HashingBusy, LoginGuard
from gateway.keys import SERVICES
from gateway.web.console.auth import (
    LOGIN_COOKIE,
    clear_session,
    csrf_ok,
    load_operator,
    operator_of,
    read_session,
    secure_cookies,
    set_session,
    sign,
    unsign,
    with_headers,
)
from gateway.web.console.render import render
from gateway.web.ratelimit import limited_response, request_ip
from store.models import OperatorAction

# One answer for every failed login (wrong password, unknown or disabled account, a try
# during its delay): the page must not tell which usernames exist.
ERRORS = {
    "bad_credentials": "Tên đăng nhập hoặc mật khẩu không đúng, hoặc đã thử sai nhiều lần "
                       "(mỗi lần thử sau phải chờ lâu hơn). Vui lòng thử lại sau ít phút.",
    "busy": "Hệ thống đang nhận quá nhiều lượt đăng nhập. Vui lòng thử lại sau ít phút.",
    "csrf": "Phiên đăng nhập đã hết hạn, vui lòng thử lại.",
}
_GUARDS: weakref.WeakKeyDictionary[web.Application, LoginGuard] = weakref.WeakKeyDictionary()


def login_guard(app: web.Application) -> LoginGuard:
    """The app's login throttle (made on first use, from the login_* settings)."""
    guard = _GUARDS.get(app)
    if guard is None:
        settings = app[SERVICES].settings
        guard = LoginGuard(settings.login_max_failures, settings.login_lockout_minutes * 60.0,
                           settings.login_max_concurrent_hashes)
        _GUARDS[app] = guard
    return guard


def safe_next(value: str | None) -> str:
    """Only console paths of this site are valid redirect targets after login."""
    if not value:
        return "/console/"
    parts = urlsplit(value)
    if (parts.scheme or parts.netloc or not value.startswith("/console/") or "\\" in value
            or ".." in value):
        return "/console/"
    return value


def _login_page(request: web.Request, error: str | None = None, status: int = 200,
                username: str = "") -> web.Response:
    secret = request.app[SERVICES].settings.session_secret
    token = secrets.token_urlsafe(24)
    resp = render(request, "login.html", status=status, op=None, csrf=token,
                  error=ERRORS.get(error or ""), username=username,
                  next=safe_next(request.query.get("next")))
    resp.set_cookie(LOGIN_COOKIE, sign(secret, "login", {"t": token}), max_age=3600,
                    path="/console", httponly=True, samesite="Lax",
                    secure=secure_cookies(request))
    return with_headers(resp)  # type: ignore[return-value]


async def login_page(request: web.Request) -> web.StreamResponse:
    """The login form (already logged-in operators go to the queue)."""
    if read_session(request) is not None and "again" not in request.query:
        session = read_session(request)
        if session and await load_operator(request, session):
            raise web.HTTPSeeOther(safe_next(request.query.get("next")))
    return _login_page(request)


async def login_submit(request: web.Request) -> web.StreamResponse:
    """Throttle (IP, everyone, then account+IP), check the credentials, one answer for all."""
    services = request.app[SERVICES]
    for key, surface in ((None, "login"), ("*", "login_all")):
        refused = limited_response(request, surface, key)
        if refused is not None:
            page = _login_page(request, "busy", status=429)
            page.headers["Retry-After"] = refused.headers["Retry-After"]
            return page
    form = await request.post()
    username = str(form.get("username", ""))[:64].strip()
    password = str(form.get("password", ""))[:1024]
    cookie = unsign(services.settings.session_secret, "login", request.cookies.get(LOGIN_COOKIE))
    if cookie is None or not await csrf_ok(request, str(cookie.get("t", ""))):
        return _login_page(request, "csrf", status=403, username=username)
    ip = request_ip(request)
    guard = login_guard(request.app)
    if not guard.admit(username, ip):
        # Within this pair's delay: refused without looking at the account or the password.
        return _login_page(request, "bad_credentials", status=401, username=username)
    try:
        async with services.sessions() as db:
            result = await attempt_login(db, services.settings, username, password, ip, guard)
            await db.commit()
    except HashingBusy:
        return _login_page(request, "busy", status=429, username=username)
    if result.operator is None:
        return _login_page(request, "bad_credentials", status=401, username=username)
    guard.succeeded(username, ip)
    resp = web.HTTPSeeOther(safe_next(str(form.get("next", ""))))
    set_session(resp, request, result.operator)
    resp.del_cookie(LOGIN_COOKIE, path="/console")
    raise resp


async def logout(request: web.Request) -> web.StreamResponse:
    """End the session (recorded, so the old cookie stops working everywhere)."""
    op = operator_of(request)
    services = request.app[SERVICES]
    async with services.sessions() as db:
        db.add(OperatorAction(operator_id=op.id, action="logout"))
        await db.commit()
    resp = web.HTTPSeeOther("/console/login")
    clear_session(resp)
    raise resp
