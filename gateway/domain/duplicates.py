"""Duplicate candidates: earlier open or forwarded reports of the same sector nearby, with
similar text, or at the same normalised address (the trust gate and the console use them)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from rapidfuzz import fuzz, process
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.domain.texts import fold
from gateway.services import Services
from gateway.settings import Settings
from store.models import Report
from store.repos import console as console_repo
from store.repos import reports as reports_repo
from store.repos.console import ScanRow

OPEN_STATUSES = ("submitted", "confirmed", "forwarded", "in_progress")
TEXT_SIMILARITY = 85.0  # rapidfuzz token_set_ratio on folded report text
MIN_TEXT_CHARS = 12  # shorter texts ("mất điện") are alike without being the same case
MAX_SCAN = 500
EARTH_RADIUS_M = 6_371_000.0
_ADDRESS_NOISE = re.compile(r"\b(so|nha|duong|pho|phuong|xa|quan|huyen|tp|thanh pho|thi tran)\b")


@dataclass(frozen=True)
class Candidate:
    """An earlier report this one may duplicate, and why."""

    report: Report
    distance_m: float | None
    similarity: float
    reasons: tuple[str, ...]


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (infinite for a non-finite coordinate stored earlier)."""
    if not all(math.isfinite(v) for v in (lat1, lon1, lat2, lon2)):
        return math.inf
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, max(0.0, a))))


def text_similarity(a: str, b: str) -> float:
    """token_set_ratio of the two texts without case or diacritics (0-100)."""
    fa, fb = fold(a), fold(b)
    if not fa or not fb:
        return 0.0
    return float(fuzz.token_set_ratio(fa, fb))


def normal_address(address: str | None) -> str:
    """An address without case, diacritics, punctuation and words like "số", "đường"."""
    if not address:
        return ""
    text = re.sub(r"[^\w]+", " ", fold(address))
    return " ".join(_ADDRESS_NOISE.sub(" ", text).split())


def _text(report: Report | ScanRow) -> str:
    return "\n".join(p for p in (report.text, report.transcript) if p)


Verdict = tuple[float | None, float, tuple[str, ...]]  # distance, text similarity, reasons


def judge(report: Report, other: Report | ScanRow, radius_m: float,
          text_threshold: float = TEXT_SIMILARITY) -> Verdict | None:
    """(distance, text similarity, reasons) when `other` may be what `report` duplicates."""
    return judge_all(report, [other], radius_m, text_threshold)[0]


def judge_all(report: Report, others: Sequence[Report | ScanRow], radius_m: float,
              text_threshold: float = TEXT_SIMILARITY) -> list[Verdict | None]:
    """`judge` for many earlier reports at once: the report's own text and address are
    prepared once and the similarities computed in one rapidfuzz pass (a submission scans
    up to MAX_SCAN reports)."""
    mine = fold(_text(report))
    theirs = [fold(_text(o)) for o in others]
    if mine and theirs:
        # token_set_ratio of empty strings is 0, as text_similarity says.
        sims = process.cdist([mine], theirs, scorer=fuzz.token_set_ratio, workers=1)[0]
    else:
        sims = [0.0] * len(theirs)
    address = normal_address(report.address)
    lat, lon = report.lat, report.lon
    out: list[Verdict | None] = []
    for other, folded, similarity in zip(others, theirs, sims, strict=True):
        reasons: list[str] = []
        distance = None
        same_sector = bool(report.sector) and other.sector == report.sector
        if lat is not None and lon is not None and other.lat is not None and other.lon is not None:
            distance = haversine_m(lat, lon, other.lat, other.lon)
            if same_sector and distance <= radius_m:
                reasons.append("near")
        similarity = float(similarity) if folded else 0.0
        if (similarity >= text_threshold and len(mine) >= MIN_TEXT_CHARS
                and len(folded) >= MIN_TEXT_CHARS):
            reasons.append("text")
        if same_sector and address and address == normal_address(other.address):
            reasons.append("address")
        out.append((distance, similarity, tuple(reasons)) if reasons else None)
    return out


def score_candidate(report: Report, other: Report, radius_m: float,
                    text_threshold: float = TEXT_SIMILARITY) -> Candidate | None:
    """Why `other` may be the report `report` duplicates, or None."""
    verdict = judge(report, other, radius_m, text_threshold)
    return Candidate(other, *verdict) if verdict is not None else None


async def candidates(
    session: AsyncSession, settings: Settings, report: Report, limit: int = 10,
    text_threshold: float = TEXT_SIMILARITY,
) -> list[Candidate]:
    """Earlier open or forwarded reports within the window that `report` may duplicate:
    nearest, then most similar, first."""
    start = report.submitted_at or report.created_at
    window = timedelta(hours=settings.duplicate_window_hours)
    # Only the columns a duplicate is judged on: each submission scans up to MAX_SCAN rows.
    rows = await console_repo.duplicate_scan(
        session, exclude_id=report.id, statuses=OPEN_STATUSES, since=start - window,
        until=start, limit=MAX_SCAN)
    verdicts = judge_all(report, rows, settings.duplicate_radius_m, text_threshold)
    judged = [(row, v) for row, v in zip(rows, verdicts, strict=True) if v is not None]
    judged.sort(key=lambda rv: (rv[1][0] if rv[1][0] is not None else 1e12, -rv[1][1]))
    judged = judged[:limit]
    full = await reports_repo.by_ids(session, [row.id for row, _ in judged])
    return [Candidate(full[row.id], *v) for row, v in judged if row.id in full]


async def find_candidates(
    session: AsyncSession, services: Services, report: Report, limit: int = 10
) -> list[Candidate]:
    """`candidates` for callers holding the Services bag (the console's duplicate panel)."""
    return await candidates(session, services.settings, report, limit)
