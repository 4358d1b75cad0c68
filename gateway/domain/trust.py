"""The trust gate: the gateway acts alone only when it is right (DESIGN §2, issue 14).

After the classifier has spoken, the gate decides whether an operator must look first. It adds
to the classifier's own reasons (low score or margin, context only, one weak keyword, short or
empty text, urgent, misconduct) what only the gateway knows: the transcript of a call (its
confidence and whether it is Vietnamese at all), audio that was never transcribed, flags the
dialog set (`silent`, `transcript_pending`, `no_place`, `photo_only`, `emergency`, …), and
likely duplicates of reports already open or forwarded. A likely duplicate waits for an
operator, or is linked to its original at once when it is unmistakable (same sector, a few
metres away, similar words): its citizen is told and follows the original.

The thresholds are data: `[trust]` of config/sectors.toml.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.domain.duplicates import Candidate, candidates
from gateway.domain.lifecycle import CLASSIFIER, Lifecycle
from nlp.normalize import normalize
from nlp.rules import looks_vietnamese
from store.models import Report

log = logging.getLogger("paht.trust")

DEFAULT_FLAGS = ("no_place", "photo_only", "emergency", "silent", "silent_audio",
                 "transcript_pending", "no_transcript")


CALLER_CONFIRMED = "caller_confirmed"  # report flag: the caller confirmed on the keypad
# What the caller's confirmation settles: the words and the sector were heard right.
SETTLED_BY_CALLER = frozenset({
    "transcript_low_confidence", "transcript_not_vietnamese", "low_score", "low_margin",
    "context_only", "single_keyword", "weak_evidence", "short_text", "classifier",
    "rival_sector", "second_opinion", "no_keyword",
})


@dataclass(frozen=True, slots=True)
class TrustConfig:
    """The `[trust]` table of sectors.toml."""

    transcript_min_confidence: float = 0.75
    transcript_min_syllables: float = 0.7
    review_flags: tuple[str, ...] = DEFAULT_FLAGS
    text_similarity: float = 85.0
    auto_link_radius_m: float = 50.0
    auto_link_similarity: float = 70.0
    auto_link: bool = True

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> TrustConfig:
        """Read `[trust]` from a parsed sectors.toml (defaults for what is missing)."""
        raw = dict((config or {}).get("trust", {}))
        out = cls()
        return cls(
            float(raw.get("transcript_min_confidence", out.transcript_min_confidence)),
            float(raw.get("transcript_min_syllables", out.transcript_min_syllables)),
            tuple(raw.get("review_flags", out.review_flags)),
            float(raw.get("text_similarity", out.text_similarity)),
            float(raw.get("auto_link_radius_m", out.auto_link_radius_m)),
            float(raw.get("auto_link_similarity", out.auto_link_similarity)),
            bool(raw.get("auto_link", out.auto_link)),
        )


def config_of(classifier: Any | None) -> TrustConfig:
    """The trust configuration of a loaded classifier (defaults without one)."""
    return TrustConfig.from_config(getattr(classifier, "config", None))


def has_audio(report: Report) -> bool:
    """Whether the citizen sent audio (a call, a voice note)."""
    return any(a.get("kind") == "audio" for a in report.attachments)


def speech_reasons(report: Report, cfg: TrustConfig) -> list[str]:
    """Why a spoken report cannot be trusted without an operator."""
    reasons: list[str] = []
    transcript = (report.transcript or "").strip()
    if not transcript:
        if has_audio(report) and not report.text.strip():
            reasons.append("no_transcript")  # the words of the call never reached us
        return reasons
    conf = report.transcript_confidence
    if conf is None or conf < cfg.transcript_min_confidence:
        reasons.append("transcript_low_confidence")
    if not looks_vietnamese(normalize(transcript), cfg.transcript_min_syllables):
        reasons.append("transcript_not_vietnamese")
    return reasons


def review_reasons(report: Report, result: Any | None, cfg: TrustConfig) -> list[str]:
    """Everything that sends this report to an operator (empty: the gateway may act)."""
    reasons: list[str] = list(getattr(result, "reasons", ())) if result is not None else [
        "no_classifier"]
    if result is not None and not reasons and getattr(result, "needs_review", False):
        reasons.append("classifier")
    if not report.text.strip() and not (report.transcript or "").strip():
        reasons.append("empty")
    reasons += speech_reasons(report, cfg)
    reasons += [f"flag:{f}" for f in report.flags if f in cfg.review_flags]
    if report.urgent:
        reasons.append("urgent")
    if result is not None and getattr(result, "misconduct", False):
        reasons.append("misconduct")
    if CALLER_CONFIRMED in report.flags:
        # The hotline read the sector and place back and the caller confirmed on the keypad:
        # what was heard is settled; urgency, misconduct and duplicates still need a person.
        settled = set(SETTLED_BY_CALLER) | ({"flag:no_place"} if report.address else set())
        reasons = [r for r in reasons if r not in settled]
    return list(dict.fromkeys(reasons))


def apply_gate(report: Report, result: Any | None, cfg: TrustConfig) -> list[str]:
    """Set `needs_review` and `review_reasons` on the report; returns the reasons."""
    reasons = review_reasons(report, result, cfg)
    report.review_reasons = reasons
    report.needs_review = bool(reasons)
    return reasons


def strict_match(report: Report, cand: Candidate, cfg: TrustConfig) -> bool:
    """A duplicate so clear it is linked without an operator."""
    if not cfg.auto_link or report.urgent or not report.sector:
        return False
    if cand.report.sector != report.sector or cand.similarity < cfg.auto_link_similarity:
        return False
    near = cand.distance_m is not None and cand.distance_m <= cfg.auto_link_radius_m
    return near or "address" in cand.reasons


async def check_duplicates(session: AsyncSession, life: Lifecycle, report: Report,
                           cfg: TrustConfig) -> tuple[Candidate | None, bool]:
    """(the likeliest original, whether it was linked at once). A linked report is merged:
    its citizen is told and follows the original; the central system hears of the link when
    it knows the original."""
    found = await candidates(session, life.settings, report, limit=5,
                             text_threshold=cfg.text_similarity)
    if not found:
        return None, False
    best = found[0]
    if strict_match(report, best, cfg) and "misconduct" not in report.review_reasons:
        await link(session, life, report, best.report, note="auto")
        return best, True
    report.suspected_duplicate_of = best.report.id
    report.review_reasons = [*report.review_reasons, "possible_duplicate"]
    report.needs_review = True
    return best, False


async def link(session: AsyncSession, life: Lifecycle, report: Report, original: Report,
               note: str | None = None) -> None:
    """Merge `report` into `original` as the classifier, and tell the centre of the link."""
    await life.merge(session, report, original, CLASSIFIER, note=note)  # the centre hears too
    log.info("duplicate linked", extra={"code": report.code, "original": original.code})


def summary(reasons: Sequence[str]) -> str:
    """The reasons as one short line for logs and the console."""
    return ", ".join(reasons) or "-"
