"""Reminders: reports waiting for an operator past the SLA, and reports overdue at the agency.

A reminder is a log line plus an `OperatorAction(action="reminder", operator_id=None)` row on
the report (the console lists them); `after["audience"]` says who it is for — "operators"
(submitted, unconfirmed longer than PAHT_CONSOLE_SLA_MINUTES) or "supervisors" (forwarded or
in progress past the agency deadline of config/deadlines.toml) — so each report gets at most
one reminder of each kind.

Agency deadlines count working time: Monday–Friday, 7:30–11:30 and 13:30–17:00
Asia/Ho_Chi_Minh, minus the public holidays of any year — Vietnam's, from the `holidays`
library, whose lunar ones (Tết, Giỗ Tổ Hùng Vương) come from its Vietnamese lunisolar
calendar, with the days off moved by the government — plus the province's own extra days off
and make-up working days of config/deadlines.toml; a working day is 7.5 hours, so "2 days"
from Friday 16:00 ends Tuesday 16:00.
"""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.domain.texts import config_dir
from gateway.services import Services
from store.models import OperatorAction, Report, utcnow
from store.repos import stats as stats_repo

log = logging.getLogger("paht.reminders")


def _hm(text: str) -> time:
    hour, minute = text.split(":")
    return time(int(hour), int(minute))


@dataclass
class WorkCalendar:
    """Working periods of the week in the province's time zone, minus holidays."""

    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Ho_Chi_Minh"))
    workdays: frozenset[int] = frozenset({1, 2, 3, 4, 5})
    periods: tuple[tuple[time, time], ...] = ((time(7, 30), time(11, 30)),
                                              (time(13, 30), time(17, 0)))
    holidays: frozenset[date] = frozenset()
    country: str = ""  # "VN": public holidays of every year from the `holidays` library
    extra_workdays: frozenset[date] = frozenset()  # make-up Saturdays (làm bù)
    _years: dict[int, frozenset[date]] = field(default_factory=dict, repr=False)

    def public_holidays(self, year: int) -> frozenset[date]:
        """The country's public holidays of `year` (cached), plus the listed extra days."""
        if year not in self._years:
            days: set[date] = {d for d in self.holidays if d.year == year}
            if self.country:
                import holidays as holidays_lib

                days |= set(holidays_lib.country_holidays(self.country, years=year))
            self._years[year] = frozenset(days)
        return self._years[year]

    @property
    def day_hours(self) -> float:
        """Working hours in one day (7.5 by default)."""
        return sum((datetime.combine(date.min, b) - datetime.combine(date.min, a)).seconds
                   for a, b in self.periods) / 3600

    def is_workday(self, day: date) -> bool:
        """A working weekday that is no public holiday, or a make-up working day."""
        if day in self.extra_workdays:
            return True
        return day.isoweekday() in self.workdays and day not in self.public_holidays(day.year)

    def add_working(self, start: datetime, hours: float) -> datetime:
        """The moment `hours` of working time after `start` (aware; returned in UTC)."""
        remaining = timedelta(hours=hours)
        local = start.astimezone(self.tz)
        day = local.date()
        for _ in range(3660):  # ten years of days: a bound, never reached in practice
            if self.is_workday(day):
                for begin, end in self.periods:
                    p_start = datetime.combine(day, begin, self.tz)
                    p_end = datetime.combine(day, end, self.tz)
                    if local >= p_end:
                        continue
                    cursor = max(local, p_start)
                    if cursor + remaining <= p_end:
                        return (cursor + remaining).astimezone(ZoneInfo("UTC"))
                    remaining -= p_end - cursor
                    local = p_end
            day += timedelta(days=1)
            local = datetime.combine(day, time(0, 0), self.tz)
        raise ValueError("no working time in the calendar")


@dataclass
class Deadlines:
    """Per-sector agency deadlines (config/deadlines.toml) on a working calendar."""

    calendar: WorkCalendar
    default_hours: float
    urgent_hours: float | None
    sectors: dict[str, float]

    @classmethod
    def load(cls, directory: Path | None = None) -> Deadlines:
        """Read deadlines.toml from the province's config directory."""
        with (config_dir(directory) / "deadlines.toml").open("rb") as fh:
            data = tomllib.load(fh)
        cal_data = data.get("calendar", {})
        calendar = WorkCalendar(
            tz=ZoneInfo(cal_data.get("timezone", "Asia/Ho_Chi_Minh")),
            workdays=frozenset(cal_data.get("workdays", [1, 2, 3, 4, 5])),
            periods=tuple((_hm(a), _hm(b)) for a, b in cal_data.get(
                "periods", [["07:30", "11:30"], ["13:30", "17:00"]])),
            holidays=frozenset(date.fromisoformat(d) for d in cal_data.get("holidays", [])),
            country=str(cal_data.get("public_holidays", "")),
            extra_workdays=frozenset(date.fromisoformat(d)
                                     for d in cal_data.get("extra_workdays", [])),
        )

        def hours(entry: dict[str, Any]) -> float:
            if "hours" in entry:
                return float(entry["hours"])
            return float(entry.get("days", 10)) * calendar.day_hours

        urgent = data.get("urgent")
        return cls(calendar, hours(data.get("default", {})), hours(urgent) if urgent else None,
                   {k: hours(v) for k, v in data.get("sectors", {}).items()})

    def due(self, report: Report, since: datetime) -> datetime:
        """When the agency's time for `report`, counted from `since`, runs out."""
        hours = self.sectors.get(report.sector or "", self.default_hours)
        if report.urgent and self.urgent_hours is not None:
            hours = min(hours, self.urgent_hours)
        return self.calendar.add_working(since, hours)


async def _remind(session: AsyncSession, report: Report, audience: str, note: str,
                  **after: Any) -> None:
    session.add(OperatorAction(report_id=report.id, operator_id=None, action="reminder",
                               before={"status": report.status},
                               after={"audience": audience, **after}, note=note))
    log.warning("reminder", extra={"code": report.code, "audience": audience, "why": note})


def _ids(reports: list[Report]) -> list[int]:
    return [r.id for r in reports if r.id is not None]


async def remind_operators(services: Services, now: datetime | None = None) -> int:
    """Remind operators of submitted reports still unconfirmed after the console SLA."""
    now = now or utcnow()
    sla = services.settings.console_sla_minutes
    count = 0
    async with services.sessions() as session:
        waiting = await stats_repo.unconfirmed_before(session, now - timedelta(minutes=sla),
                                                      limit=200)
        done = await stats_repo.reminded(session, _ids(waiting), "operators")
        for report in waiting:
            if report.id in done:
                continue
            waited = int((now - (report.submitted_at or now)).total_seconds() // 60)
            await _remind(session, report, "operators",
                          f"chờ xác nhận {waited} phút (SLA {sla} phút)", waited_minutes=waited)
            count += 1
        await session.commit()
    return count


async def forwarded_times(session: AsyncSession, reports: list[Report]
                          ) -> dict[int, datetime | None]:
    """When each report reached the central system (its first 'forwarded' history row,
    else its confirmation), by report id."""
    first = await stats_repo.first_forwarded(session, _ids(reports))
    return {r.id: first.get(r.id, r.confirmed_at) for r in reports if r.id is not None}


async def remind_supervisors(services: Services, deadlines: Deadlines | None = None,
                             now: datetime | None = None) -> int:
    """Remind supervisors of reports past their agency deadline (working time)."""
    now = now or utcnow()
    deadlines = deadlines or Deadlines.load(services.settings.config_dir)
    count = 0
    async with services.sessions() as session:
        open_reports = await stats_repo.at_agency(session, limit=500)
        since_of = await forwarded_times(session, open_reports)
        done = await stats_repo.reminded(session, _ids(open_reports), "supervisors")
        for report in open_reports:
            since = since_of.get(report.id or 0)
            if since is None or deadlines.due(report, since) > now or report.id in done:
                continue
            due = deadlines.due(report, since)
            await _remind(session, report, "supervisors",
                          f"quá hạn xử lý tại {report.agency or 'cơ quan chức năng'}",
                          deadline=due.isoformat(), agency=report.agency)
            count += 1
        await session.commit()
    return count
