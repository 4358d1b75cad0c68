"""Console security: login on every route (parametrised over the route table), CSRF, lock-out,
roles, cookie flags, session end on logout, redirects that stay on the site."""

from __future__ import annotations

import re
from typing import Any

import pytest
from console_support import (
    PASSWORD,
    actions,
    add_operator,
    csrf_of,
    get_report,
    login,
    make_report,
    session_csrf,
)
from yarl import URL

from gateway.keys import SERVICES
from gateway.web.console import ROUTES
from gateway.web.console.auth import COOKIE, LOGIN_COOKIE
from store.models import Operator

PROTECTED = [r for r in ROUTES if r.role is not None]
ADMIN_ONLY = [r for r in ROUTES if r.role == "admin"]
POSTS = [r for r in PROTECTED if r.method == "POST"]


def concrete(path: str) -> str:
    return re.sub(r"\{id:[^}]+\}", "1", path)


@pytest.fixture
async def app_client(settings_factory, gateway_client) -> Any:
    client = await gateway_client(settings_factory(review_policy="all"))
    await make_report(client.app, "Cống thoát nước bị nghẹt, nước tràn lên mặt đường")
    return client


def session_cookie(client: Any) -> str | None:
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/console/")).get(COOKIE)
    return cookie.value if cookie else None


@pytest.mark.parametrize("route", PROTECTED, ids=[f"{r.method} {r.path}" for r in PROTECTED])
async def test_every_console_route_requires_login(app_client, route) -> None:
    resp = await app_client.request(route.method, concrete(route.path),
                                    data={"csrf": "x", "sector": "khac", "original": "1"},
                                    allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"].startswith("/console/login?next=")
    report = await get_report(app_client.app, 1)
    assert report.status == "submitted" and report.sector != "khac"
    assert [a.action for a in await actions(app_client.app)] == []


async def test_forged_or_foreign_session_cookie_is_refused(app_client, settings_factory,
                                                           gateway_client) -> None:
    await add_operator(app_client.app, "an")
    await login(app_client, "an")
    value = session_cookie(app_client)
    assert value and (await app_client.get("/console/", allow_redirects=False)).status == 200
    body, _, mac = value.partition(".")
    for forged in (body + "." + mac[:-2] + "AA", body[:-2] + "x." + mac, "garbage", ""):
        app_client.session.cookie_jar.clear()
        app_client.session.cookie_jar.update_cookies({COOKIE: forged},
                                                     URL(str(app_client.make_url("/console/"))))
        assert (await app_client.get("/console/", allow_redirects=False)).status == 303
    # A cookie signed with another deployment's secret is worthless here.
    other = await gateway_client(settings_factory(session_secret="another-secret"))
    other.session.cookie_jar.update_cookies({COOKIE: value},
                                            URL(str(other.make_url("/console/"))))
    assert (await other.get("/console/", allow_redirects=False)).status == 303


@pytest.mark.parametrize("route", POSTS, ids=[f"{r.method} {r.path}" for r in POSTS])
async def test_posts_need_the_csrf_token(app_client, route) -> None:
    await add_operator(app_client.app, "boss", "admin")
    await login(app_client, "boss")
    path = concrete(route.path)
    data = {"sector": "khac", "original": "1", "do": "disable", "note": "x", "text": "x",
            "urgent": "1", "kind": "spam", "reason": "x"}
    missing = await app_client.post(path, data=data, allow_redirects=False)
    wrong = await app_client.post(path, data={**data, "csrf": "wrong"}, allow_redirects=False)
    assert missing.status == 403 and wrong.status == 403
    token = await session_csrf(app_client)
    foreign = await app_client.post(path, data={**data, "csrf": token},
                                    headers={"Origin": "https://evil.example"},
                                    allow_redirects=False)
    assert foreign.status == 403
    report = await get_report(app_client.app, 1)
    assert report.status == "submitted" and not report.urgent
    assert {a.action for a in await actions(app_client.app)} == {"login"}


async def test_login_form_needs_its_csrf_token(app_client) -> None:
    await add_operator(app_client.app, "an")
    resp = await app_client.post("/console/login", data={"username": "an", "password": PASSWORD},
                                 allow_redirects=False)
    assert resp.status == 403 and session_cookie(app_client) is None


async def test_wrong_passwords_delay_that_ip_but_never_lock_the_account(app_client) -> None:
    """Five free tries per (account, IP), then each try waits; other IPs still log in."""
    app = app_client.app
    await add_operator(app, "an")
    answers = set()
    for _ in range(6):
        resp = await login(app_client, "an", "sai-mat-khau")
        assert resp.status == 401
        answers.add(re.sub(r'name="csrf" value="[^"]+"', "", await resp.text()))
    # Within the delay even the right password is refused from this IP, without a hash check.
    resp = await login(app_client, "an", PASSWORD)
    assert resp.status == 401 and session_cookie(app_client) is None
    log = [a.action for a in await actions(app)]
    assert log == ["login_failed"] * 5  # the sixth and seventh were never checked
    async with app[SERVICES].sessions() as s:
        an = (await s.exec(Operator.__table__.select().where(Operator.username == "an"))).one()
    assert an.failed_logins == 5 and an.locked_until is None  # counted, never locked
    # The same account from another address (behind a trusted proxy) is not locked out.
    from gateway.web.console.login import login_guard

    login_guard(app).succeeded("an", "127.0.0.1")
    assert (await login(app_client, "an")).status == 303


async def test_failures_count_until_a_success(settings_factory, gateway_client) -> None:
    client = await gateway_client(settings_factory(login_max_failures=3,
                                                   login_lockout_minutes=15))
    app = client.app
    await add_operator(app, "an")
    for _ in range(2):
        await login(client, "an", "sai")
    assert (await login(client, "an")).status == 303  # success resets the count
    await client.post("/console/logout", data={"csrf": await session_csrf(client)})
    for _ in range(2):
        assert (await login(client, "an", "sai")).status == 401
    assert (await login(client, "an")).status == 303
    async with app[SERVICES].sessions() as s:
        an = (await s.exec(Operator.__table__.select().where(Operator.username == "an"))).one()
    assert an.failed_logins == 0


async def test_unknown_user_gets_the_same_answer(app_client) -> None:
    resp = await login(app_client, "khong-ton-tai", "sai")
    assert resp.status == 401 and "Tên đăng nhập hoặc mật khẩu không đúng" in await resp.text()


@pytest.mark.parametrize("route", ADMIN_ONLY, ids=[f"{r.method} {r.path}" for r in ADMIN_ONLY])
@pytest.mark.parametrize("role", ["operator", "supervisor"])
async def test_only_admins_reach_admin_pages(app_client, route, role) -> None:
    await add_operator(app_client.app, role, role)
    await login(app_client, role)
    token = await session_csrf(app_client)
    resp = await app_client.request(route.method, concrete(route.path),
                                    data={"csrf": token, "do": "disable"},
                                    allow_redirects=False)
    assert resp.status == 403 and "không có quyền" in (await resp.text()).lower()
    async with app_client.app[SERVICES].sessions() as s:
        assert all(op.active for op in (await s.exec(Operator.__table__.select())).all())


async def test_roles_and_admin_pages(app_client) -> None:
    app = app_client.app
    await add_operator(app, "an")
    await add_operator(app, "giamsat", "supervisor")
    await add_operator(app, "boss", "admin")
    await login(app_client, "an")
    html = await (await app_client.get("/console/")).text()
    assert "/console/admin/" not in html and "/console/keywords" not in html
    assert (await app_client.get("/console/keywords")).status == 403
    await app_client.post("/console/logout", data={"csrf": csrf_of(html)})
    await login(app_client, "giamsat")
    assert (await app_client.get("/console/keywords")).status == 200
    await app_client.post("/console/logout", data={"csrf": await session_csrf(app_client)})
    await login(app_client, "boss")
    token = await session_csrf(app_client)
    listing = await (await app_client.get("/console/admin/operators")).text()
    assert all(name in listing for name in ("an", "giamsat", "boss"))
    async with app[SERVICES].sessions() as s:
        an = (await s.exec(Operator.__table__.select().where(Operator.username == "an"))).one()
    await app_client.post(f"/console/admin/operators/{an.id}",
                          data={"csrf": token, "do": "disable"})
    audit = await (await app_client.get("/console/admin/audit")).text()
    assert "disable_operator" in audit and "Đăng nhập" in audit
    await app_client.post("/console/logout", data={"csrf": token})
    resp = await login(app_client, "an")
    # Disabled answers like any failure (no username enumeration), and starts no session.
    assert resp.status == 401 and "Tên đăng nhập hoặc mật khẩu không đúng" in await resp.text()
    assert "vô hiệu hoá" not in await resp.text()
    assert [a.action for a in await actions(app, "login_refused")] == ["login_refused"]


async def test_disabling_ends_open_sessions(app_client) -> None:
    app = app_client.app
    await add_operator(app, "an")
    await login(app_client, "an")
    async with app[SERVICES].sessions() as s:
        for op in (await s.exec(Operator.__table__.select())).all():
            row = await s.get(Operator, op.id)
            row.active = False
            s.add(row)
        await s.commit()
    assert (await app_client.get("/console/", allow_redirects=False)).status == 303


async def test_cookie_flags_and_logout_ends_the_session(app_client) -> None:
    await add_operator(app_client.app, "an")
    resp = await login(app_client, "an")
    header = next(v for v in resp.headers.getall("Set-Cookie") if v.startswith(COOKIE + "="))
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Path=/console" in header
    assert "Secure" not in header  # plain-http deployment (tests)
    value = session_cookie(app_client)
    token = await session_csrf(app_client)
    out = await app_client.post("/console/logout", data={"csrf": token}, allow_redirects=False)
    assert out.status == 303 and out.headers["Location"] == "/console/login"
    # Replaying the old cookie after logout does not work.
    app_client.session.cookie_jar.update_cookies({COOKIE: value},
                                                 URL(str(app_client.make_url("/console/"))))
    assert (await app_client.get("/console/", allow_redirects=False)).status == 303


async def test_secure_cookie_behind_https(settings_factory, gateway_client) -> None:
    client = await gateway_client(settings_factory(public_base_url="https://paht.example.vn"))
    await add_operator(client.app, "an")
    page = await client.get("/console/login")
    login_cookie = page.cookies[LOGIN_COOKIE]
    assert login_cookie["secure"]
    # The test client speaks plain http and would not send a Secure cookie back: send it.
    resp = await client.post("/console/login", data={
        "username": "an", "password": PASSWORD, "csrf": csrf_of(await page.text())},
        headers={"Cookie": f"{LOGIN_COOKIE}={login_cookie.value}"}, allow_redirects=False)
    header = next(v for v in resp.headers.getall("Set-Cookie") if v.startswith(COOKIE + "="))
    assert "Secure" in header and "HttpOnly" in header


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/",
                                    "/console/../admin", "/elsewhere", "/\\evil.example"])
async def test_login_never_redirects_off_the_console(app_client, target) -> None:
    await add_operator(app_client.app, "an")
    page = await app_client.get("/console/login")
    token = csrf_of(await page.text())
    resp = await app_client.post("/console/login", data={
        "username": "an", "password": PASSWORD, "csrf": token, "next": target},
        allow_redirects=False)
    assert resp.status == 303
    location = resp.headers["Location"]
    assert location == "/console/" or (location.startswith("/console/") and ".." not in location)


async def test_pages_carry_security_headers(app_client) -> None:
    await add_operator(app_client.app, "an")
    await login(app_client, "an")
    resp = await app_client.get("/console/")
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert resp.headers["Cache-Control"] == "no-store"
    static = await app_client.get("/console/static/console.js")
    assert static.status == 200
