"""The weekly summary the IOC sends to the provincial People's Committee (HTML and CSV).

`render_weekly(services, week_start)` covers Monday 00:00 to the next Monday 00:00 in the
province's time zone: reports received per channel, sector and agency; the on-time rate of
reports closed that week (closed before their agency deadline, see
gateway/workers/reminders.py); and
citizen satisfaction (mean rating and the share of 4–5 among reports rated). `write_weekly`
stores both files under var/reports/.
"""

from __future__ import annotations

import csv
import html
import io
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from channels.registry import CHANNEL_NAMES, traits_of
from gateway.services import Services
from gateway.workers.reminders import Deadlines, forwarded_times
from store.repos import stats as stats_repo

# Reports that came in through an integration rather than a citizen channel.
SOURCE_NAMES = {"open311": "Open311", "api": "API"}


def source_name(channel: str) -> str:
    """The name of the channel (or integration) a report came through, for the summary."""
    if channel in CHANNEL_NAMES:
        return traits_of(channel).title
    return SOURCE_NAMES.get(channel, channel)


@dataclass
class WeeklyStats:
    """The numbers of one week."""

    start: date
    total: int
    by_channel: Counter[str]
    by_sector: Counter[str]
    by_agency: Counter[str]
    closed: int
    on_time: int
    rated: int
    rating_sum: int
    satisfied: int

    @property
    def on_time_rate(self) -> float | None:
        """Share of closed reports closed before their deadline."""
        return self.on_time / self.closed if self.closed else None

    @property
    def mean_rating(self) -> float | None:
        """Mean 1–5 rating."""
        return self.rating_sum / self.rated if self.rated else None

    @property
    def satisfied_rate(self) -> float | None:
        """Share of ratings 4 or 5."""
        return self.satisfied / self.rated if self.rated else None


def _bounds(services: Services, week_start: date) -> tuple[datetime, datetime]:
    tz = ZoneInfo(services.settings.timezone)
    start = datetime.combine(week_start, time(0, 0), tz)
    return start, start + timedelta(days=7)


async def weekly_stats(services: Services, week_start: date) -> WeeklyStats:
    """Count the week's reports (received) and closures (resolved or rejected)."""
    start, end = _bounds(services, week_start)
    deadlines = Deadlines.load(services.settings.config_dir)
    stats = WeeklyStats(week_start, 0, Counter(), Counter(), Counter(), 0, 0, 0, 0, 0)
    async with services.sessions() as session:
        for group in await stats_repo.received_counts(session, start, end):
            stats.total += group.reports
            stats.by_channel[group.channel] += group.reports
            stats.by_sector[group.sector or "chua_phan_loai"] += group.reports
            stats.by_agency[group.agency or "chưa giao"] += group.reports
        closed = await stats_repo.resolved_between(session, start, end)
        since_of = await forwarded_times(session, closed)
        for r in closed:
            stats.closed += 1
            since = since_of.get(r.id or 0)
            if since is not None and r.resolved_at is not None and (
                    r.resolved_at <= deadlines.due(r, since)):
                stats.on_time += 1
            if r.rating is not None:
                stats.rated += 1
                stats.rating_sum += r.rating
                stats.satisfied += r.rating >= 4
    return stats


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _rows(services: Services, stats: WeeklyStats) -> list[tuple[str, str, str]]:
    clf = services.classifier
    sectors = getattr(clf, "sectors", {}) or {}
    rows: list[tuple[str, str, str]] = [("Tổng", "Phản ánh tiếp nhận", str(stats.total))]
    for name, counter, is_channel in (("Kênh", stats.by_channel, True),
                                      ("Lĩnh vực", stats.by_sector, False),
                                      ("Cơ quan", stats.by_agency, False)):
        for key, count in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])):
            shown = source_name(key) if is_channel else key
            if not is_channel and key in sectors:
                shown = getattr(sectors[key], "name", key)
            rows.append((name, shown, str(count)))
    rows += [
        ("Xử lý", "Đã xử lý xong trong tuần", str(stats.closed)),
        ("Xử lý", "Đúng hạn", f"{stats.on_time}/{stats.closed} ({_pct(stats.on_time_rate)})"),
        ("Hài lòng", "Số đánh giá", str(stats.rated)),
        ("Hài lòng", "Điểm trung bình (1–5)",
         "—" if stats.mean_rating is None else f"{stats.mean_rating:.2f}"),
        ("Hài lòng", "Hài lòng (4–5 điểm)", _pct(stats.satisfied_rate)),
    ]
    return rows


async def render_weekly(services: Services, week_start: date) -> tuple[str, str]:
    """The week's summary as (html, csv)."""
    stats = await weekly_stats(services, week_start)
    rows = _rows(services, stats)
    end = week_start + timedelta(days=6)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["muc", "chi_tieu", "gia_tri"])
    writer.writerows(rows)
    title = (f"Báo cáo tuần phản ánh hiện trường {week_start:%d/%m/%Y} – {end:%d/%m/%Y}")
    body = "\n".join(
        f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td><td>{html.escape(c)}</td></tr>"
        for a, b, c in rows)
    page = (
        "<!doctype html>\n<html lang=\"vi\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title></head><body>\n<h1>{html.escape(title)}</h1>\n"
        "<table border=\"1\" cellpadding=\"4\"><thead><tr><th>Mục</th><th>Chỉ tiêu</th>"
        f"<th>Giá trị</th></tr></thead>\n<tbody>\n{body}\n</tbody></table>\n</body></html>\n"
    )
    return page, buf.getvalue()


async def write_weekly(services: Services, week_start: date) -> tuple[Path, Path]:
    """Render the week and write var/reports/paht-week-<date>.{html,csv}."""
    page, table = await render_weekly(services, week_start)
    directory = Path(services.settings.var_dir) / "reports"
    directory.mkdir(parents=True, exist_ok=True)
    html_path = directory / f"paht-week-{week_start.isoformat()}.html"
    csv_path = directory / f"paht-week-{week_start.isoformat()}.csv"
    html_path.write_text(page, encoding="utf-8")
    csv_path.write_text(table, encoding="utf-8-sig")  # BOM: Excel opens Vietnamese correctly
    return html_path, csv_path


def last_week_start(services: Services, now: datetime) -> date:
    """The Monday of the week before the one containing `now` (local time)."""
    today = now.astimezone(ZoneInfo(services.settings.timezone)).date()
    return today - timedelta(days=today.weekday() + 7)


async def weekly_summary(services: Services) -> tuple[Path, Path]:
    """The scheduled job: last week's summary."""
    from store.models import utcnow

    return await write_weekly(services, last_week_start(services, utcnow()))
