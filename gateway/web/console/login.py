"""Login and logout pages. The login form carries its own signed CSRF cookie (no session yet)."""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from aiohttp import web

from gateway.domain.accounts import attempt_login
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
from store.models import OperatorAction

ERRORS = {
    "bad_credentials": "Tên đăng nhập hoặc mật khẩu không đúng.",
    "locked": "Tài khoản đang tạm khoá do đăng nhập sai nhiều lần. Vui lòng thử lại sau.",
    "disabled": "Tài khoản đã bị vô hiệu hoá. Liên hệ quản trị viên.",
    "csrf": "Phiên đăng nhập đã hết hạn, vui lòng thử lại.",
}


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
    """Check the credentials; count failures and lock the account after too many."""
    services = request.app[SERVICES]
    form = await request.post()
    username = str(form.get("username", ""))[:64].strip()
    password = str(form.get("password", ""))[:1024]
    cookie = unsign(services.settings.session_secret, "login", request.cookies.get(LOGIN_COOKIE))
    if cookie is None or not await csrf_ok(request, str(cookie.get("t", ""))):
        return _login_page(request, "csrf", status=403, username=username)
    ip = request.remote or ""
    async with services.sessions() as db:
        result = await attempt_login(db, services.settings, username, password, ip)
        await db.commit()
    if result.operator is None:
        return _login_page(request, result.error, status=401, username=username)
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
