"""The hotline's in-call decisions (issue 15): is the call's report ready, what to read back,
the caller's keypad confirmation or sector (stored on the report, overriding the classifier,
counted as the caller's confirmation), the duty operator's hours and call-back requests.

The keypad menu, the operator's number and hours and the speech vocabulary are data:
`config/voice.toml`. Status changes go through `services.lifecycle` only.
"""

from __future__ import annotations

import functools
import logging
import tomllib
from dataclasses import dataclass
from datetime import datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.domain import reports, trust
from gateway.domain.lifecycle import CITIZEN
from gateway.domain.texts import config_dir
from gateway.services import Services
from store.models import (
    EVENT_PENDING,
    EVENT_PROCESSING,
    OperatorAction,
    Report,
    ReportStatus,
    utcnow,
)
from store.repos import alerts as alerts_repo
from store.repos import calls as calls_repo

log = logging.getLogger("paht.hotline")

PLACE_MAX_CHARS = 80  # a read-back is short: long addresses are cut at a word


@dataclass(frozen=True, slots=True)
class HotlineConfig:
    """config/voice.toml."""

    sectors: tuple[str, ...] = ()
    spoken: tuple[tuple[str, str], ...] = ()
    operator_number: str = ""
    days: tuple[int, ...] = (1, 2, 3, 4, 5)
    hours: tuple[tuple[time, time], ...] = ()
    dial_timeout: int = 20
    pause_seconds: int = 3
    menu_repeats: int = 2
    places: tuple[str, ...] = ()
    words: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HotlineConfig:
        """Parse the TOML tables (defaults for what is missing)."""
        menu, op = data.get("menu", {}), data.get("operator", {})
        hold, vocab = data.get("hold", {}), data.get("vocabulary", {})
        hours = []
        for span in op.get("hours", ()):
            start, _, end = str(span).partition("-")
            hours.append((time.fromisoformat(start.strip()), time.fromisoformat(end.strip())))
        return cls(
            sectors=tuple(str(s) for s in menu.get("sectors", ())),
            spoken=tuple((str(k), str(v)) for k, v in data.get("spoken", {}).items()),
            operator_number=str(op.get("number", "")).strip(),
            days=tuple(int(d) for d in op.get("days", (1, 2, 3, 4, 5))),
            hours=tuple(hours),
            dial_timeout=int(op.get("dial_timeout", 20)),
            pause_seconds=int(hold.get("pause_seconds", 3)),
            menu_repeats=int(hold.get("menu_repeats", 2)),
            places=tuple(str(p) for p in vocab.get("places", ())),
            words=tuple(str(w) for w in vocab.get("words", ())),
        )

    def in_hours(self, when: datetime) -> bool:
        """Whether `when` (local time) is within the duty desk's working hours."""
        if when.isoweekday() not in self.days:
            return False
        now = when.time()
        return any(start <= now < end for start, end in self.hours)


@functools.cache
def _load(path: Path) -> HotlineConfig:
    if not path.is_file():
        return HotlineConfig()
    with path.open("rb") as fh:
        return HotlineConfig.from_dict(tomllib.load(fh))


def hotline_config(directory: Path | None = None) -> HotlineConfig:
    """The province's voice.toml (cached per file)."""
    return _load((config_dir(directory) / "voice.toml").resolve())


def vocabulary(services: Services, cfg: HotlineConfig | None = None) -> list[str]:
    """Domain words for the speech engines: sector names, the menu words, places."""
    cfg = cfg or hotline_config(services.settings.config_dir)
    words: list[str] = []
    clf = services.classifier
    if clf is not None:
        words += [s.name for code, s in clf.sectors.items() if code != "khac"]
    words += [*cfg.words, *cfg.places]
    return list(dict.fromkeys(words))


def operator_number(services: Services, cfg: HotlineConfig) -> str:
    """The number to <Dial> now, or "" outside working hours / without a number."""
    number = services.settings.voice_operator_number.strip() or cfg.operator_number
    if not number:
        return ""
    local = utcnow().astimezone(ZoneInfo(services.settings.timezone))
    return number if cfg.in_hours(local) else ""


def spoken_sector(services: Services, cfg: HotlineConfig, code: str | None) -> str | None:
    """How a sector is said in the call; None when nothing was understood (khác)."""
    if not code or code == "khac":
        return None
    spoken = dict(cfg.spoken)
    if code in spoken:
        return spoken[code]
    clf = services.classifier
    name = clf.sectors[code].name if clf is not None and code in clf.sectors else code
    return name.replace(" – ", " và ")


def menu_names(services: Services, cfg: HotlineConfig) -> list[tuple[str, str]]:
    """(code, spoken name) of the keypad's sector menu, known sectors only, at most eight."""
    clf = services.classifier
    known = [c for c in cfg.sectors if clf is None or c in clf.sectors]
    return [(c, spoken_sector(services, cfg, c) or c) for c in known[:8]]


def spoken_place(report: Report) -> str | None:
    """The report's place as read back (the extracted address, cut at a word)."""
    place = (report.address or "").strip()
    if len(place) > PLACE_MAX_CHARS:
        place = place[:PLACE_MAX_CHARS].rsplit(" ", 1)[0]
    return place or None


async def call_report(session: AsyncSession, recording_sid: str | None, sender: str,
                      since: datetime | None) -> tuple[str, Report | None]:
    """("waiting" | "ready" | "failed", report) for the call's recording or live stream."""
    if recording_sid:
        event = await calls_repo.event_of(session, "voice", recording_sid)
    elif since is not None:
        event = await calls_repo.latest_stream_event(session, "voice", sender, since)
    else:
        return "failed", None
    if event is None or event.status in (EVENT_PENDING, EVENT_PROCESSING):
        return "waiting", None
    report = await calls_repo.report_of_event(session, event)
    return ("ready", report) if report is not None else ("failed", None)


async def emergency_numbers(session: AsyncSession, report: Report) -> tuple[str, ...]:
    """The numbers of the duty alerts raised for this report (empty: no emergency)."""
    found: list[str] = []
    for alert in await alerts_repo.alerts_of(session, report.id or 0):
        found += [n for n in alert.numbers if n not in found]
    return tuple(found)


async def caller_confirms(session: AsyncSession, services: Services, report: Report,
                          sector: str | None = None) -> bool:
    """Store the caller's keypad confirmation (and chosen sector) on the report, re-run the
    trust gate and confirm it when nothing else needs an operator; returns True if confirmed.
    The caller commits."""
    before = {"sector": report.sector, "flags": list(report.flags)}
    if trust.CALLER_CONFIRMED not in report.flags:
        report.flags = [*report.flags, trust.CALLER_CONFIRMED]
    clf = services.classifier
    text = reports.report_text(report)
    if sector and sector != report.sector_by_caller:
        report.sector_by_caller = sector
        if report.status in (ReportStatus.SUBMITTED, ReportStatus.CONFIRMED):
            report.sector = sector  # the caller's choice overrides the classifier
            try:
                report.agency = clf.route(sector, text).agency if clf is not None else None
            except Exception:  # routing table incomplete: the operator routes it
                report.agency = None
    session.add(OperatorAction(
        report_id=report.id, operator_id=None,
        action="caller_sector" if sector else "caller_confirm",
        before=before, after={"sector": report.sector, "sector_by_caller": sector}))
    report.updated_at = utcnow()
    session.add(report)
    if report.status != ReportStatus.SUBMITTED:
        return False
    cfg = trust.config_of(clf)
    result = clf.classify(text) if clf is not None else None
    reasons = trust.review_reasons(report, result, cfg)
    # A likely duplicate found at submission still waits for an operator.
    if report.suspected_duplicate_of is not None:
        reasons.append("possible_duplicate")
    report.review_reasons = list(dict.fromkeys(reasons))  # trust settles what the caller did
    report.needs_review = bool(report.review_reasons)
    if not reports.auto_confirms(services.settings, report, result is not None):
        log.info("caller confirmed; still for review",
                 extra={"code": report.code, "review": trust.summary(report.review_reasons)})
        return False
    await services.lifecycle.confirm(session, report, CITIZEN)
    log.info("caller confirmed", extra={"code": report.code, "sector": report.sector})
    return True


async def supersede(session: AsyncSession, services: Services, old: Report,
                    new: Report) -> None:
    """The caller spoke again: the first report joins the new one (it follows it)."""
    if old.id == new.id or old.status != ReportStatus.SUBMITTED:
        return
    if new.status not in (ReportStatus.SUBMITTED, ReportStatus.CONFIRMED):
        return
    await services.lifecycle.merge(session, old, new, CITIZEN, note="caller spoke again")
