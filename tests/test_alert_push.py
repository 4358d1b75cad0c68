"""Duty alerts and reminders pushed to a Telegram group (a local fake Bot API) and by e-mail
(a local aiosmtpd server): each once per target, retried after a failure, no phone number."""

from __future__ import annotations

import asyncio
import socket
from email import message_from_bytes
from email.header import decode_header, make_header
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from gateway.workers.alerts import push_alerts, targets
from store.models import AlertPush, DutyAlert, OperatorAction

try:
    from tests.fakes.central import make_services, seed_report
except ImportError:  # run from tests/
    from fakes.central import make_services, seed_report  # type: ignore[no-redef]


class Inbox:
    """aiosmtpd handler keeping every message."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp() -> Any:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


async def test_alerts_and_reminders_reach_telegram_and_email(
        settings_factory: Any, aiohttp_server: Any, smtp: Any) -> None:
    posts: list[dict[str, Any]] = []
    fail = {"left": 1}

    async def send_message(request: web.Request) -> web.Response:
        assert request.match_info["token"] == "123:abc"
        if fail["left"]:
            fail["left"] -= 1
            return web.json_response({"ok": False, "description": "Too Many Requests"},
                                     status=429)
        posts.append(await request.json())
        return web.json_response({"ok": True, "result": {"message_id": len(posts)}})

    app = web.Application()
    app.router.add_post("/bot{token}/sendMessage", send_message)
    server = await aiohttp_server(app)
    inbox, port = smtp
    services = make_services(settings_factory(
        telegram_token="123:abc", telegram_api_base=str(server.make_url("")).rstrip("/"),
        alert_telegram_chat_id="-1001234", alert_smtp_host="127.0.0.1", alert_smtp_port=port,
        alert_email_from="paht@ioc.example", alert_email_to="truc-ban@ioc.example"))
    try:
        assert targets(services) == ["telegram", "email"]
        report = await seed_report(services, 1, confirm=False)
        async with services.sessions() as s:
            s.add(DutyAlert(report_id=report.id, hazard="fire", numbers=["114"], channel="sms"))
            s.add(OperatorAction(report_id=report.id, action="reminder",
                                 after={"audience": "operators"}, note="chờ xác nhận 20 phút"))
            await s.commit()
        # First run: Telegram refuses the first message (retried later), e-mail takes both.
        assert await push_alerts(services) == 3
        assert len(inbox.messages) == 2 and len(posts) == 1
        assert await push_alerts(services) == 1  # the refused one, retried
        assert await push_alerts(services) == 0  # nothing twice
        assert len(posts) == 2 and len(inbox.messages) == 2
        assert all(p["chat_id"] == "-1001234" for p in posts)
        bodies = [p["text"] for p in posts]
        assert any("Cháy, nổ" in b and report.code in b for b in bodies)
        assert any("Nhắc việc" in b for b in bodies)
        subject = str(make_header(decode_header(inbox.messages[0]["Subject"])))
        assert subject.startswith("KHẨN: Cháy, nổ")
        assert "+84" not in " ".join(bodies)  # no phone numbers pushed
        async with services.sessions() as s:
            from sqlmodel import select

            rows = (await s.exec(select(AlertPush))).all()
        assert sorted(r.status for r in rows) == ["sent"] * 4
    finally:
        await services.engine.dispose()


async def test_unreachable_targets_give_up_after_the_attempts(settings_factory: Any) -> None:
    services = make_services(settings_factory(
        alert_smtp_host="127.0.0.1", alert_smtp_port=free_port(), alert_push_max_attempts=2,
        alert_email_from="a@b.example", alert_email_to="c@d.example"))
    try:
        report = await seed_report(services, 1, confirm=False)
        async with services.sessions() as s:
            s.add(DutyAlert(report_id=report.id, hazard="gas", numbers=["114"], channel="web"))
            await s.commit()
        assert await push_alerts(services) == 0
        assert await push_alerts(services) == 0
        async with services.sessions() as s:
            from sqlmodel import select

            [row] = (await s.exec(select(AlertPush))).all()
        assert row.status == "dead" and row.attempts == 2 and row.last_error
        assert await push_alerts(services) == 0
        await asyncio.sleep(0)
    finally:
        await services.engine.dispose()


def test_no_target_configured(settings_factory: Any) -> None:
    services = make_services(settings_factory())
    assert targets(services) == []
