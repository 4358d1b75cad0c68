"""What the sector classifier returns: matched phrases, sectors and the classification."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Match:
    """One matched phrase; ``start``/``end`` is the character span in the original text."""

    sector: str
    phrase: str
    matched: str
    start: int
    end: int
    weight: float
    similarity: float
    role: str = "object"  # "object" (what is reported) or "context" (its setting)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form of the match."""
        return {f: getattr(self, f) for f in self.__slots__} | {
            "similarity": round(self.similarity, 3)
        }


@dataclass(frozen=True, slots=True)
class Sector:
    """A sector of the taxonomy with its handling agency (``route`` may swap the agency)."""

    code: str
    name: str
    description: str
    agency: str
    agency_code: str
    co_agencies: tuple[str, ...] = ()
    reason: str = "sector"  # "sector" or "misconduct" (routed to the inspectorate)


@dataclass(frozen=True, slots=True)
class Analysis:
    """What the classifier read in a text, before the verdict (the review gate reads it)."""

    evidence: dict[str, float]
    matches: list[Match]
    places: list[Any]  # nlp.place.Place
    urgent: tuple[str, ...]
    content: int  # tokens that are not punctuation or fillers
    objects: dict[str, float]  # evidence from object phrases alone
    misconduct: bool
    context_raw: dict[str, float]  # context evidence before the cap (the review's rival check)
    question: bool  # asks something ("cho hỏi ..."): an inquiry is not a complaint to forward
    words: tuple[str, ...] = ()  # diacritic-free words outside addresses (the second opinion's)


@dataclass(frozen=True, slots=True)
class Classification:
    """Result of :meth:`Classifier.classify`."""

    sector: str
    score: float
    needs_review: bool
    runner_up: str | None
    runner_up_score: float
    matches: tuple[Match, ...]
    urgent: bool
    urgent_terms: tuple[str, ...]
    address: str | None
    evidence: Mapping[str, float] = field(default_factory=dict, compare=False)
    reasons: tuple[str, ...] = ()  # why it needs review: low_score, context_only, urgent ...
    evidence_kind: str = "object"  # what the sector rests on: object | context | none
    misconduct: bool = False  # accuses an official or agency: the inspectorate's case
    second_opinion: str | None = None  # the learnt model's sector (nlp.second_opinion)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form of the classification (without the raw evidence)."""
        out = {f: getattr(self, f) for f in self.__slots__ if f != "evidence"}
        return out | {"score": round(self.score, 4), "urgent_terms": list(self.urgent_terms),
                      "reasons": list(self.reasons),
                      "runner_up_score": round(self.runner_up_score, 4),
                      "matches": [m.to_dict() for m in self.matches]}
