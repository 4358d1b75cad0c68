"""Helpers of the console tests: operators, logging in through the real form, reports."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from sqlmodel import select

from gateway.domain import reports
from gateway.domain.accounts import hash_password
from gateway.keys import SERVICES
from store.models import InboundEvent, Operator, OperatorAction, Report, utcnow
from store.repos import citizens as citizens_repo

PASSWORD = "mat-khau-du-dai-123"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token of the first form of a page."""
    match = _CSRF.search(html)
    assert match, "no CSRF field on the page"
    return match.group(1)


async def add_operator(app: Any, username: str, role: str = "operator",
                       password: str = PASSWORD) -> int:
    """Create a console account straight in the database; returns its id."""
    async with app[SERVICES].sessions() as s:
        op = Operator(username=username, password_hash=hash_password(password), role=role,
                      display_name=username.title())
        s.add(op)
        await s.commit()
        return op.id or 0


async def login(client: Any, username: str, password: str = PASSWORD) -> Any:
    """Log in through the form; returns the response (a redirect on success)."""
    page = await client.get("/console/login")
    token = csrf_of(await page.text())
    return await client.post("/console/login", data={
        "username": username, "password": password, "csrf": token, "next": "/console/"},
        allow_redirects=False)


async def session_csrf(client: Any) -> str:
    """The logged-in session's CSRF token, read from the queue page."""
    page = await client.get("/console/")
    assert page.status == 200
    return csrf_of(await page.text())


async def make_report(app: Any, text: str, *, channel: str = "web", sender: str | None = None,
                      lat: float | None = None, lon: float | None = None,
                      phone: str | None = None, minutes_ago: float = 0,
                      attachments: list[dict[str, Any]] | None = None) -> Report:
    """A submitted report with one inbound message, as the pipeline would leave it."""
    services = app[SERVICES]
    async with services.sessions() as s:
        n = len((await s.exec(select(Report.id))).all())
        sender = sender or f"{channel}:citizen-{n}"
        citizen = await citizens_repo.resolve_citizen(s, sender, channel, display_name=f"Dân {n}",
                                             phone=phone)
        when = utcnow() - timedelta(minutes=minutes_ago)
        report = Report(channel=channel, citizen_id=citizen.id or 0, sender=sender, text=text,
                        lat=lat, lon=lon, attachments=attachments or [], created_at=when)
        s.add(report)
        await s.flush()
        s.add(InboundEvent(
            channel=channel, external_id=f"ext-{n}", sender=sender, received_at=when,
            message={"channel": channel, "text": text, "kind": "message",
                     "attachments": [{"kind": a["kind"], "url": a["url"]}
                                     for a in attachments or []]},
            status="done", report_id=report.id))
        await reports.submit(s, services, report)
        report.submitted_at = when
        s.add(report)
        await s.commit()
        await s.refresh(report)
        return report


async def get_report(app: Any, report_id: int) -> Report:
    """A fresh copy of a report."""
    async with app[SERVICES].sessions() as s:
        report = await s.get(Report, report_id)
        assert report is not None
        return report


async def actions(app: Any, action: str | None = None) -> list[OperatorAction]:
    """The audit log, oldest first (optionally one kind of action)."""
    async with app[SERVICES].sessions() as s:
        stmt = select(OperatorAction).order_by(OperatorAction.id)  # type: ignore[arg-type]
        if action:
            stmt = stmt.where(OperatorAction.action == action)
        return list((await s.exec(stmt)).all())


# Three reports about a broken public clock the classifier does not know (no keyword names it).
CLOCK = [
    "Đồng hồ công cộng ở ngã tư bị chết kim mấy tuần nay",
    "Cái đồng hồ công cộng trước chợ chết kim rồi",
    "Đồng hồ công cộng công viên chết kim, không ai sửa",
]


async def resector(client: Any, texts: list[str], target: str) -> str:
    """As a logged-in supervisor, file a new report of each text under `target` (a sector the
    classifier did not choose) through the console form; returns the session's CSRF token."""
    await add_operator(client.app, "giamsat", "supervisor")
    await login(client, "giamsat")
    csrf = await session_csrf(client)
    for text in texts:
        report = await make_report(client.app, text)
        assert report.sector != target
        resp = await client.post(f"/console/reports/{report.id}/sector",
                                 data={"csrf": csrf, "sector": target}, allow_redirects=False)
        assert resp.status == 303
    return csrf
