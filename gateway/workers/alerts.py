"""Duty alerts and reminders pushed outside the console: to a Telegram group chat through the
bot (`sendMessage`, https://core.telegram.org/bots/api#sendmessage) and/or by e-mail over
SMTP. Each item is pushed once per target (`store.repos.pushes`); a failure is retried on the
next run until PAHT_ALERT_PUSH_MAX_ATTEMPTS. The messages carry the tracking code, the hazard,
the sector and a link to the console, never the citizen's name or phone number.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage

import aiohttp

from gateway.services import Services
from gateway.web.console.render import sector_name
from gateway.web.console.settings_file import load as load_config
from store.models import utcnow
from store.repos import pushes as pushes_repo

log = logging.getLogger("paht.alerts")
LOOKBACK = timedelta(hours=24)  # older items are not pushed any more
TIMEOUT = aiohttp.ClientTimeout(total=10)


@dataclass(frozen=True)
class Item:
    """One thing to push: its key prefix, subject and body."""

    key: str
    subject: str
    body: str


def targets(services: Services) -> list[str]:
    """The configured push targets."""
    s = services.settings
    out = []
    if s.alert_telegram_chat_id and s.telegram_token:
        out.append("telegram")
    if s.alert_smtp_host and s.alert_email_to and s.alert_email_from:
        out.append("email")
    return out


async def items(services: Services, since: datetime) -> list[Item]:
    """Duty alerts and reminders written since `since`."""
    cfg = load_config(services.settings.config_dir)
    base = services.settings.public_base_url.rstrip("/")
    out: list[Item] = []
    async with services.sessions() as db:
        for alert, report in await pushes_repo.recent_alerts(db, since):
            hazard = cfg.hazard(alert.hazard)
            out.append(Item(
                f"alert:{alert.id}", f"KHẨN: {hazard} · {report.code or report.id}",
                f"Cảnh báo khẩn: {hazard}\nPhản ánh {report.code or report.id} · "
                f"{sector_name(services, report.sector)}\n"
                f"Địa chỉ: {report.address or 'chưa có'}\n"
                f"Mở: {base}/console/reports/{report.id}"))
        for action, report in await pushes_repo.recent_reminders(db, since):
            who = "Giám sát" if action.after.get("audience") == "supervisors" else "Cán bộ"
            out.append(Item(
                f"reminder:{action.id}", f"Nhắc việc: {report.code or report.id}",
                f"Nhắc việc ({who}): phản ánh {report.code or report.id} · "
                f"{sector_name(services, report.sector)}: {action.note or ''}\n"
                f"Mở: {base}/console/reports/{report.id}"))
    return out


async def send_telegram(services: Services, http: aiohttp.ClientSession, item: Item) -> None:
    """Post the item to the duty group chat; raises on any failure."""
    s = services.settings
    url = f"{s.telegram_api_base.rstrip('/')}/bot{s.telegram_token}/sendMessage"
    async with http.post(url, json={"chat_id": s.alert_telegram_chat_id, "text": item.body,
                                    "disable_web_page_preview": True}) as resp:
        data = await resp.json(content_type=None)
        if resp.status != 200 or not data.get("ok"):
            raise RuntimeError(f"telegram {resp.status}: {data.get('description', '')}")


def _send_mail_blocking(services: Services, item: Item) -> None:
    s = services.settings
    msg = EmailMessage()
    msg["Subject"] = item.subject
    msg["From"] = s.alert_email_from
    msg["To"] = ", ".join(a.strip() for a in s.alert_email_to.split(",") if a.strip())
    msg.set_content(item.body)  # UTF-8: Vietnamese survives every mail client
    with smtplib.SMTP(s.alert_smtp_host, s.alert_smtp_port, timeout=10) as smtp:
        if s.alert_smtp_starttls:
            smtp.starttls()
        if s.alert_smtp_user:
            smtp.login(s.alert_smtp_user, s.alert_smtp_password)
        smtp.send_message(msg)


async def send_email(services: Services, item: Item) -> None:
    """Mail the item to the duty addresses (smtplib in a thread); raises on any failure."""
    await asyncio.to_thread(_send_mail_blocking, services, item)


async def push_alerts(services: Services, now: datetime | None = None) -> int:
    """Push every new duty alert and reminder to every target; returns how many were sent."""
    wanted = targets(services)
    if not wanted:
        return 0
    found = await items(services, (now or utcnow()) - LOOKBACK)
    keys = [f"{i.key}:{t}" for i in found for t in wanted]
    async with services.sessions() as db:
        done = await pushes_repo.by_keys(db, keys)
    sent = 0
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        for item in found:
            for target in wanted:
                key = f"{item.key}:{target}"
                row = done.get(key)
                if row is not None and row.status != "pending":
                    continue
                error = None
                try:
                    if target == "telegram":
                        await send_telegram(services, http, item)
                    else:
                        await send_email(services, item)
                except Exception as exc:  # every failure is retried on the next run
                    error = f"{type(exc).__name__}: {exc}"
                    log.warning("alert push failed", extra={"key": key, "error": error})
                async with services.sessions() as db:
                    if row is not None:
                        row = await db.merge(row)
                    pushes_repo.record(db, row, key, target, error is None, error,
                                       services.settings.alert_push_max_attempts)
                    await db.commit()
                sent += error is None
    return sent
