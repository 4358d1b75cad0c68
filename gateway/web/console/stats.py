"""Dashboard figures: reports per day, channel and sector, time to confirmation, the auto-accept
and operator-override rates per sector (the classifier's real accuracy), overdue counts."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.services import Services
from store.models import utcnow
from store.repos import stats as stats_repo


@dataclass
class SectorStats:
    """Per predicted sector: how the classifier's verdicts fared."""

    total: int = 0
    auto: int = 0  # confirmed by the classifier without an operator
    reviewed: int = 0  # confirmed or corrected by an operator
    overridden: int = 0  # the operator changed the sector

    @property
    def auto_rate(self) -> float | None:
        """Share of reports accepted automatically."""
        return self.auto / self.total if self.total else None

    @property
    def override_rate(self) -> float | None:
        """Share of reviewed reports whose sector the operator changed."""
        return self.overridden / self.reviewed if self.reviewed else None


@dataclass
class Stats:
    """Everything the dashboard shows for a period."""

    days: list[date]
    channels: list[str]
    per_day: dict[date, Counter[str]]  # channel counts per day
    per_day_sector: dict[date, Counter[str]]
    per_sector: Counter[str]
    sectors: dict[str, SectorStats]
    median_confirm_min: float | None
    median_operator_confirm_min: float | None
    overdue_open: int
    overdue_confirmed: int
    total: int
    rows: list[dict[str, Any]] = field(default_factory=list)


async def compute(session: AsyncSession, services: Services, days: int = 14) -> Stats:
    """The dashboard figures over the last `days` days (province time)."""
    tz = ZoneInfo(services.settings.timezone)
    sla = timedelta(minutes=services.settings.console_sla_minutes)
    today = utcnow().astimezone(tz).date()
    first = today - timedelta(days=days - 1)
    start = datetime.combine(first, datetime.min.time(), tz)
    reports = await stats_repo.submitted_since(session, start)
    ids = [r.id for r in reports if r.id is not None]
    auto_ids = await stats_repo.auto_confirmed(session, ids)
    actions = await stats_repo.review_actions(session, ids)
    reviewed: set[int] = set()
    predicted: dict[int, str] = {}
    changed: set[int] = set()
    for a in actions:
        rid = a.report_id or 0
        reviewed.add(rid)
        if a.action == "change_sector":
            predicted.setdefault(rid, str(a.before.get("sector") or ""))
            if a.before.get("sector") != a.after.get("sector"):
                changed.add(rid)
    per_day: dict[date, Counter[str]] = defaultdict(Counter)
    per_day_sector: dict[date, Counter[str]] = defaultdict(Counter)
    per_sector: Counter[str] = Counter()
    sectors: dict[str, SectorStats] = defaultdict(SectorStats)
    waits: list[float] = []
    operator_waits: list[float] = []
    overdue_open = overdue_confirmed = 0
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for r in reports:
        sub = r.submitted_at
        assert sub is not None
        rid = r.id or 0
        day = sub.astimezone(tz).date()
        per_day[day][r.channel] += 1
        per_day_sector[day][r.sector or "?"] += 1
        per_sector[r.sector or "?"] += 1
        guess = predicted.get(rid, r.sector or "?")
        s = sectors[guess]
        s.total += 1
        s.auto += rid in auto_ids
        if rid in reviewed:
            s.reviewed += 1
            s.overridden += rid in changed
        wait = None
        if r.confirmed_at is not None:
            wait = (r.confirmed_at - sub).total_seconds() / 60
            waits.append(wait)
            if rid not in auto_ids:
                operator_waits.append(wait)
            overdue_confirmed += r.confirmed_at - sub > sla and rid not in auto_ids
        elif r.status == "submitted" and now - sub > sla:
            overdue_open += 1
        rows.append({
            "code": r.code, "channel": r.channel, "sector": r.sector or "",
            "predicted_sector": guess, "status": r.status, "urgent": int(r.urgent),
            "submitted_at": sub.astimezone(tz).isoformat(timespec="seconds"),
            "confirmed_at": r.confirmed_at.astimezone(tz).isoformat(timespec="seconds")
            if r.confirmed_at else "",
            "minutes_to_confirm": round(wait, 1) if wait is not None else "",
            "auto_accepted": int(rid in auto_ids), "overridden": int(rid in changed),
            "duplicate_of": r.duplicate_of or "",
        })
    channels = sorted({c for counter in per_day.values() for c in counter})
    return Stats(
        days=[first + timedelta(days=n) for n in range(days)], channels=channels,
        per_day=per_day, per_day_sector=per_day_sector, per_sector=per_sector,
        sectors=dict(sectors),
        median_confirm_min=statistics.median(waits) if waits else None,
        median_operator_confirm_min=statistics.median(operator_waits)
        if operator_waits else None,
        overdue_open=overdue_open, overdue_confirmed=overdue_confirmed, total=len(reports),
        rows=rows,
    )


# Inline SVG charts, rendered on the server (no chart library, no CDN) ----------------------

PALETTE = ("#1f6feb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d",
           "#b91c1c", "#0f766e", "#a16207", "#4338ca", "#be185d", "#475569", "#15803d")


def day_bars(stats: Stats, by: str = "channel", names: dict[str, str] | None = None,
             width: int = 720, height: int = 220) -> dict[str, Any]:
    """Geometry of a stacked bar chart of reports per day, by channel or by sector."""
    pad_l, pad_b, pad_t = 32, 28, 10
    per_day = stats.per_day if by == "channel" else stats.per_day_sector
    keys = stats.channels if by == "channel" else sorted(
        {k for counter in per_day.values() for k in counter})
    names = names or {}
    n = len(stats.days) or 1
    peak = max([sum(per_day.get(d, Counter()).values()) for d in stats.days] + [1])
    slot = (width - pad_l) / n
    scale = (height - pad_b - pad_t) / peak
    bars = []
    for i, d in enumerate(stats.days):
        y: float = height - pad_b
        for j, key in enumerate(keys):
            count = per_day.get(d, Counter()).get(key, 0)
            if not count:
                continue
            h = count * scale
            y -= h
            bars.append({"x": round(pad_l + i * slot + 2, 1), "y": round(y, 1),
                         "w": round(max(slot - 4, 1), 1), "h": round(h, 1),
                         "color": PALETTE[j % len(PALETTE)],
                         "title": f"{d:%d/%m} · {names.get(key, key)}: {count}"})
    labels = [{"x": round(pad_l + i * slot + slot / 2, 1), "text": f"{d:%d/%m}"}
              for i, d in enumerate(stats.days) if n <= 16 or i % 2 == 0]
    legend = [{"name": names.get(k, k), "color": PALETTE[j % len(PALETTE)]}
              for j, k in enumerate(keys)]
    return {"width": width, "height": height, "bars": bars, "labels": labels, "peak": peak,
            "base": height - pad_b, "legend": legend, "pad_l": pad_l, "top": pad_t}


def sector_bars(stats: Stats, names: dict[str, str], width: int = 720) -> dict[str, Any]:
    """Geometry of a horizontal bar chart of reports per sector."""
    items = stats.per_sector.most_common()
    row, label_w = 22, 220
    peak = max([c for _, c in items] + [1])
    bars = [{"y": i * row, "w": round((width - label_w - 40) * c / peak, 1), "count": c,
             "label": names.get(code, code)} for i, (code, c) in enumerate(items)]
    return {"width": width, "height": max(len(items) * row, row), "bars": bars,
            "label_w": label_w}
