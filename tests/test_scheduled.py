"""Scheduled work (issue 8): the working calendar and agency deadlines, reminders to operators
and supervisors, the weekly summary, scheduler leadership through a PostgreSQL advisory lock
(also across processes), and the job table."""

from __future__ import annotations

import asyncio
import csv
import io
import sys
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from sqlalchemy.engine import make_url
from sqlmodel import select

from gateway.workers.jobs import build_scheduler, make_forwarder
from gateway.workers.leader import Leader, lock_key
from gateway.workers.reminders import Deadlines, WorkCalendar, remind_operators, remind_supervisors
from gateway.workers.weekly import last_week_start, render_weekly, write_weekly
from store.models import OperatorAction, ReportHistory, utcnow

try:
    from tests.fakes.central import make_services, seed_report
except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from fakes.central import make_services, seed_report  # type: ignore[no-redef]

VN = ZoneInfo("Asia/Ho_Chi_Minh")


def vn(text: str) -> datetime:
    """A Vietnam local time, e.g. "2026-11-23 08:00" (Monday 23 November 2026)."""
    return datetime.fromisoformat(text).replace(tzinfo=VN)


@pytest.fixture
async def services(settings_factory: Any) -> Any:
    s = make_services(settings_factory(console_sla_minutes=15))
    yield s
    await s.engine.dispose()


# --- the working calendar ---------------------------------------------------------------

CALENDAR = WorkCalendar(holidays=frozenset({date(2026, 9, 1), date(2026, 9, 2)}))


@pytest.mark.parametrize(("start", "hours", "due"), [
    ("2026-11-23 08:00", 2, "2026-11-23 10:00"),  # Monday morning
    ("2026-11-23 11:00", 1, "2026-11-23 14:00"),  # across the lunch break
    ("2026-11-23 06:00", 0.5, "2026-11-23 08:00"),  # before opening
    ("2026-11-23 18:00", 4, "2026-11-24 11:30"),  # evening: starts next morning
    ("2026-11-27 16:00", 15, "2026-12-01 16:00"),  # Friday + 2 working days = Tuesday
    ("2026-11-28 10:00", 1, "2026-11-30 08:30"),  # Saturday counts from Monday
    ("2026-08-31 16:30", 1, "2026-09-03 08:00"),  # National Day holidays skipped
])
def test_working_calendar(start: str, hours: float, due: str) -> None:
    assert CALENDAR.add_working(vn(start), hours) == vn(due)
    assert CALENDAR.day_hours == 7.5


def test_deadlines_from_config() -> None:
    deadlines = Deadlines.load()
    start = vn("2026-11-30 08:00")  # a week without public holidays

    class R:
        def __init__(self, sector: str | None, urgent: bool = False) -> None:
            self.sector, self.urgent = sector, urgent

    assert deadlines.due(R("dien"), start) == vn("2026-12-02 08:00")  # 2 days
    assert deadlines.due(R("an_ninh_trat_tu"), start) == vn("2026-12-01 08:30")  # 8 hours
    assert deadlines.due(R("dien", urgent=True), start) == vn("2026-11-30 14:00")  # 4 hours
    assert deadlines.due(R(None), start) == vn("2026-12-14 08:00")  # default 10 days


@pytest.mark.parametrize(("day", "working"), [
    ("2027-02-05", False),  # 30 Tết (lunar year's last day), a Friday
    ("2027-02-08", False), ("2027-02-10", False),  # Mồng 3, mồng 5 Tết
    ("2027-02-11", True),  # back to work
    ("2027-04-16", False),  # Giỗ Tổ Hùng Vương, 10/3 âm lịch, a Friday
    ("2028-04-04", False),  # Giỗ Tổ 2028 (a Tuesday): computed, never listed
    ("2028-01-26", False),  # Tết 2028 (mồng 1 on 26/1)
    ("2030-02-04", False),  # Tết 2030 (mồng 2)
    ("2027-09-02", False), ("2027-04-30", False), ("2027-01-01", False),
    ("2027-04-15", True), ("2027-02-03", True),
])
def test_lunar_holidays_of_any_year(day: str, working: bool) -> None:
    calendar = Deadlines.load().calendar
    assert calendar.is_workday(date.fromisoformat(day)) is working


def test_province_extra_days_and_make_up_saturdays() -> None:
    cal = WorkCalendar(country="VN", holidays=frozenset({date(2027, 3, 1)}),
                       extra_workdays=frozenset({date(2027, 2, 20)}))
    assert not cal.is_workday(date(2027, 3, 1))  # the province's own day off
    assert cal.is_workday(date(2027, 2, 20))  # a make-up Saturday
    # Tết 2027 is 4–10 February: half an hour on the 3rd, the rest on Thursday the 11th.
    assert cal.add_working(vn("2027-02-03 16:30"), 1) == vn("2027-02-11 08:00")  # 29 Tết off
    assert cal.add_working(vn("2027-02-05 16:00"), 1) == vn("2027-02-11 08:30")


# --- reminders -----------------------------------------------------------------------------

async def reminders(services: Any) -> list[OperatorAction]:
    async with services.sessions() as session:
        return list((await session.exec(select(OperatorAction))).all())


async def test_operator_reminder_once_past_the_sla(services: Any) -> None:
    now = utcnow()
    await seed_report(services, 1, confirm=False, submitted_at=now - timedelta(minutes=20))
    await seed_report(services, 2, confirm=False, submitted_at=now - timedelta(minutes=5))
    await seed_report(services, 3, submitted_at=now - timedelta(hours=2))  # confirmed
    assert await remind_operators(services, now) == 1
    assert await remind_operators(services, now) == 0
    (row,) = await reminders(services)
    assert (row.action, row.operator_id, row.report_id) == ("reminder", None, 1)
    assert row.after == {"audience": "operators", "waited_minutes": 20}


async def test_supervisor_reminder_past_the_agency_deadline(services: Any) -> None:
    for n, sector in ((1, "dien"), (2, "dat_dai")):
        report = await seed_report(services, n, confirm=False, status="forwarded",
                                   sector=sector)
        async with services.sessions() as session:
            session.add(ReportHistory(report_id=report.id, status="forwarded",
                                      at=vn("2026-11-30 08:00")))
            await session.commit()
    now = vn("2026-12-03 09:00")  # 3 working days later: dien (2 days) is late
    assert await remind_supervisors(services, now=now) == 1
    assert await remind_supervisors(services, now=now) == 0
    (row,) = await reminders(services)
    assert row.report_id == 1 and row.after["audience"] == "supervisors"
    assert row.after["deadline"] == vn("2026-12-02 08:00").astimezone(ZoneInfo("UTC")).isoformat()


# --- the weekly summary ------------------------------------------------------------------------

async def test_weekly_summary(services: Any) -> None:
    monday = date(2026, 11, 16)
    inside = vn("2026-11-17 09:00")
    specs = [(1, "telegram", "dien", 5), (2, "zalo", "dien", 3), (3, "sms", "cap_nuoc", None)]
    for n, channel, sector, rating in specs:
        report = await seed_report(services, n, channel=channel, confirm=False, sector=sector,
                                   status="resolved", submitted_at=inside, rating=rating,
                                   resolved_at=inside + timedelta(hours=(10, 20, 80)[n - 1]))
        async with services.sessions() as session:
            session.add(ReportHistory(report_id=report.id, status="forwarded", at=inside))
            await session.commit()
    await seed_report(services, 9, confirm=False, submitted_at=vn("2026-11-24 09:00"))
    page, table = await render_weekly(services, monday)
    rows = {(r["muc"], r["chi_tieu"]): r["gia_tri"] for r in csv.DictReader(io.StringIO(table))}
    assert rows[("Tổng", "Phản ánh tiếp nhận")] == "3"
    assert rows[("Kênh", "Telegram")] == "1" and rows[("Kênh", "Zalo OA")] == "1"
    assert rows[("Lĩnh vực", "dien")] == "2"
    assert rows[("Cơ quan", "Sở Xây dựng")] == "3"
    # forwarded Tuesday 09:00, 2 working days (15 h) → due Thursday 09:00: reports 1 and 2
    # closed 10 and 20 hours later are on time, report 3 closed on Friday is late
    assert rows[("Xử lý", "Đã xử lý xong trong tuần")] == "3"
    assert rows[("Xử lý", "Đúng hạn")] == "2/3 (66.7%)"
    assert rows[("Hài lòng", "Điểm trung bình (1–5)")] == "4.00"
    assert rows[("Hài lòng", "Hài lòng (4–5 điểm)")] == "50.0%"
    assert "<h1>Báo cáo tuần phản ánh hiện trường 16/11/2026 – 22/11/2026</h1>" in page
    html_path, csv_path = await write_weekly(services, monday)
    assert html_path.parent == services.settings.var_dir / "reports"
    assert csv_path.read_text(encoding="utf-8-sig") == table


def test_last_week_start(services: Any) -> None:
    assert last_week_start(services, vn("2026-11-23 07:00")) == date(2026, 11, 16)
    assert last_week_start(services, vn("2026-11-22 23:00")) == date(2026, 11, 9)


# --- leadership -------------------------------------------------------------------------------

async def test_sqlite_process_always_leads(tmp_path: Any) -> None:
    changes: list[bool] = []
    leader = Leader(f"sqlite:///{tmp_path / 'x.db'}", changes.append)
    assert await leader.try_acquire()
    await leader.release()
    assert changes == [True, False]


async def test_one_leader_on_postgres(pg_url: str) -> None:
    a_changes: list[bool] = []
    a, b = Leader(pg_url, a_changes.append), Leader(pg_url)
    try:
        assert await a.try_acquire() is True
        assert await b.try_acquire() is False
        assert await a.try_acquire() is True  # a health check while leading
        await a.release()
        assert await b.try_acquire() is True
        assert await a.try_acquire() is False
        # the leader's connection dies (a PostgreSQL restart, a network cut): it steps down
        u = make_url(pg_url)
        with psycopg.connect(host=u.host, port=u.port or 5432, user=u.username,
                             dbname=u.database, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_locks "
                          "WHERE locktype = 'advisory' AND objid = %s",
                          [lock_key("paht-scheduler") & 0xFFFFFFFF])
        assert await b.try_acquire() is False
        assert await a.try_acquire() is True
        assert a_changes == [True, False, True]
    finally:
        await a.release()
        await b.release()


CONTENDER = """
import asyncio, sys
from gateway.workers.leader import Leader

async def main():
    leader = Leader(sys.argv[1])
    print("leading" if await leader.try_acquire() else "waiting", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await leader.release()

asyncio.run(main())
"""


async def test_leadership_moves_when_the_leading_process_dies(pg_url: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CONTENDER, pg_url, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    assert (await proc.stdout.readline()).strip() == b"leading"
    here = Leader(pg_url)
    try:
        assert await here.try_acquire() is False
        proc.kill()  # no clean release: the lock goes with the dead session
        await proc.wait()
        for _ in range(100):  # the server notices the closed socket almost at once
            if await here.try_acquire():
                break
            await asyncio.sleep(0.05)
        assert here.leading
    finally:
        await here.release()


# --- the job table ------------------------------------------------------------------------------

async def test_scheduler_jobs(settings_factory: Any) -> None:
    services = make_services(settings_factory(forward_sink="open311",
                                              forward_url="http://127.0.0.1:9/open311"))
    forwarder = make_forwarder(services)
    assert forwarder is not None
    scheduler = build_scheduler(services, forwarder)
    assert {job.id for job in scheduler.get_jobs()} == {
        "close_expired_drafts", "refresh_channel_tokens", "deliver_forwards", "poll_central",
        "queue_new_ratings", "reminders", "weekly_summary", "push_alerts", "sweep_uploads"}
    await forwarder.close()
    broken = make_services(settings_factory(forward_sink="webhook", forward_url=""))
    assert make_forwarder(broken) is None  # logged; the gateway still starts
    await services.engine.dispose()
    await broken.engine.dispose()


async def test_two_gateways_on_one_postgres_one_scheduler(
        settings_factory: Any, gateway_client: Any, pg_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """Two apps with background work on one database: exactly one runs the scheduler."""
    caplog.set_level("DEBUG", logger="paht.leader")

    def said(text: str) -> int:
        return sum(text in r.getMessage() for r in caplog.records)

    for _ in range(2):
        await gateway_client(settings_factory(database_url=pg_url, run_workers=True))
    for _ in range(1000):  # until both contenders have had their first try
        if said("leadership gained") and said("another process leads"):
            break
        await asyncio.sleep(0.02)
    assert said("another process leads") >= 1
    assert said("leadership gained") == 1
