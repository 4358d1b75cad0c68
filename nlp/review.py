"""The review gate: why an operator should look at a classifier's verdict before it acts.

Reasons come from the keyword evidence (low score or margin, context only, one weak phrase, a
rival sector, a short text, a question), from what the text is about (urgent, an official's
misconduct: always a human) and from the second opinion (:mod:`nlp.second_opinion`): when it
names another sector firmly an operator looks (``second_opinion``); when it backs the chosen
sector firmly the *soft* doubts of the keywords (``[second_opinion] soft_reasons``) are
dropped; a sector that only the second opinion sees (no keyword at all) is never acted on alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nlp.results import Analysis
from nlp.rules import rival_share
from nlp.second_opinion import OpinionPolicy

__all__ = ["ReviewPolicy", "review_reasons"]

KHAC = "khac"


@dataclass(slots=True)
class ReviewPolicy:
    """Thresholds of the gate (``[review]`` of sectors.toml, score and margin from settings)."""

    min_score: float
    min_margin: float
    single_word: bool = True
    min_evidence: float = 0.0
    min_tokens: int = 0
    urgent: bool = True
    misconduct: bool = True
    empty: bool = True
    rival_ratio: float = 0.0
    context_cap: float = 4.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any], min_score: float,
                    min_margin: float) -> ReviewPolicy:
        """Read ``[review]`` (and the context cap of ``[scoring]``)."""
        review, scoring = config.get("review", {}), config.get("scoring", {})
        return cls(min_score, min_margin,
                   bool(review.get("single_word", scoring.get("review_single_word", True))),
                   float(review.get("min_evidence", 0.0)), int(review.get("min_tokens", 0)),
                   bool(review.get("urgent", True)), bool(review.get("misconduct", True)),
                   bool(review.get("empty", True)), float(review.get("rival_ratio", 0.0)),
                   float(scoring.get("context_cap", 4.0)))


# The second opinion's log-probability per sector, the keywords' own sector, the policy.
Opinion = tuple[Mapping[str, float], str, OpinionPolicy]


def review_reasons(policy: ReviewPolicy, an: Analysis, best: str, score: float, second: float,
                   kind: str, opinion: Opinion | None = None) -> tuple[str, ...]:
    """Why an operator should look at this verdict (empty: the gateway may act alone).

    ``opinion``: the second opinion's log-probability per sector, the sector the keywords
    alone chose and the policy (None: no model loaded).
    """
    reasons: list[str] = []
    if score < policy.min_score:
        reasons.append("low_score")
    if score - second < policy.min_margin:
        reasons.append("low_margin")
    if best != KHAC:
        top = [m for m in an.matches if m.sector == best and m.role == "object"]
        if kind == "context":
            reasons.append("context_only")
        elif kind == "none":
            reasons.append("no_keyword")  # only the learnt model sees this sector
        elif policy.single_word and len(top) == 1 and " " not in top[0].phrase:
            # One single-word keyword is wrong far more often than phrases that agree.
            reasons.append("single_keyword")
        elif an.objects[best] < policy.min_evidence:
            reasons.append("weak_evidence")
        if an.content < policy.min_tokens:
            reasons.append("short_text")
        if policy.rival_ratio and rival_share(an.objects, an.context_raw, policy.context_cap,
                                              best, KHAC) >= policy.rival_ratio:
            reasons.append("rival_sector")
        if an.question:
            reasons.append("question")
    if opinion is not None:
        logs, alone, op = opinion
        lean = max(logs, key=logs.__getitem__)
        mine = logs.get(best, -math.inf)
        if alone != best or (lean != best and logs[lean] >= op.log_disagree
                             and mine < op.log_against):
            # The two readers disagree, or the learnt one overruled the keywords.
            reasons.append("second_opinion")
        elif mine >= op.log_agree and set(reasons) <= op.soft:
            reasons.clear()
    if an.urgent and policy.urgent:
        reasons.append("urgent")
    if an.misconduct and policy.misconduct:
        reasons.append("misconduct")
    return tuple(reasons)
