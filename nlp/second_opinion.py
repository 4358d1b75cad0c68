"""A second opinion on a report's sector, learnt from reports that were already filed.

The keyword classifier reads what a province wrote in ``config/sectors.toml``; this model reads
what citizens wrote in reports whose sector someone settled: the labelled examples shipped in
``config/examples/*.jsonl`` and the reports operators confirmed or re-sectored in the console.
It is a multinomial naive Bayes over the diacritic-free syllables and syllable pairs of a text,
address words left out (a street name says where, not what). Two independent readers are more
often wrong apart than together, which is what the review gate uses (:mod:`nlp.review`): they
disagree -> an operator looks; they agree firmly -> one reader's soft doubts may go.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["OpinionPolicy", "SecondOpinion", "features", "learnt", "parse_examples",
           "read_examples"]

_LEARNT: dict[Hashable, SecondOpinion | None] = {}


def learnt(key: Hashable, train: Callable[[], SecondOpinion | None]) -> SecondOpinion | None:
    """The model trained under ``key`` in this process, training it the first time."""
    if key not in _LEARNT:
        _LEARNT[key] = train()
    return _LEARNT[key]


def features(words: Sequence[str]) -> frozenset[str]:
    """Distinct syllables and adjacent syllable pairs of a text's words (diacritic-free)."""
    return frozenset((*words, *(f"{a} {b}" for a, b in pairwise(words))))


def parse_examples(jsonl: str, *, strict: bool = False) -> list[tuple[str, str]]:
    """(text, sector) of each JSON line; a line without both is skipped, or with ``strict`` an
    error (KeyError, ValueError: a file an operator hands to `paht keywords evaluate`)."""
    out: list[tuple[str, str]] = []
    for line in jsonl.splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if strict or (isinstance(row, dict) and row.get("text") and row.get("sector")):
            out.append((str(row["text"]), str(row["sector"])))
    return out


def read_examples(paths: Iterable[Path]) -> list[tuple[str, str]]:
    """The labelled lines of every file in ``paths`` (in name order; bad lines skipped)."""
    return [pair for path in sorted(paths) for pair in parse_examples(path.read_text("utf-8"))]


@dataclass(slots=True)
class OpinionPolicy:
    """How much the second opinion counts (``[second_opinion]`` of sectors.toml)."""

    weight: float = 0.35  # its log-probabilities' share in the combined verdict (0: review only)
    disagree: float = 0.5  # it names another sector with at least this probability ...
    against: float = 0.2  # ... and gives the chosen one less than this: an operator looks
    agree: float = 0.9999  # it gives the chosen sector at least this: soft doubts are dropped
    soft: frozenset[str] = frozenset()  # review reasons an agreement may drop
    alpha: float = 0.3  # additive smoothing of the word counts

    @property
    def log_disagree(self) -> float:
        """``disagree`` in log space (the gate compares log-probabilities)."""
        return math.log(self.disagree) if self.disagree > 0 else -math.inf

    @property
    def log_against(self) -> float:
        """``against`` in log space."""
        return math.log(self.against) if self.against > 0 else -math.inf

    @property
    def log_agree(self) -> float:
        """``agree`` in log space (above 1: never)."""
        return math.log(self.agree) if self.agree > 0 else -math.inf

    @classmethod
    def from_config(cls, spec: Mapping[str, Any]) -> OpinionPolicy:
        """Read the policy from the ``[second_opinion]`` table."""
        return cls(float(spec.get("weight", 0.35)), float(spec.get("disagree", 0.5)),
                   float(spec.get("against", 0.2)), float(spec.get("agree", 0.9999)),
                   frozenset(str(r) for r in spec.get("soft_reasons", ())),
                   float(spec.get("alpha", 0.3)))


class SecondOpinion:
    """Naive Bayes sector model: log-likelihood rows per feature, one column per sector."""

    def __init__(self, classes: Sequence[str], prior: np.ndarray, rows: Mapping[str, int],
                 table: np.ndarray, examples: int) -> None:
        """Wrap trained parameters (use :meth:`train`)."""
        self.classes = tuple(classes)
        self.prior = prior
        self.rows = rows
        self.table = table
        self.examples = examples

    @classmethod
    def train(cls, examples: Iterable[tuple[Collection[str], str]], classes: Sequence[str],
              alpha: float = 0.3) -> SecondOpinion:
        """Count features per sector (each feature once per text) and smooth them."""
        index = {c: i for i, c in enumerate(classes)}
        counts: dict[str, Counter[int]] = {}
        docs = [0] * len(classes)
        for feats, sector in examples:
            col = index.get(sector)
            if col is None:  # a sector the taxonomy no longer has
                continue
            docs[col] += 1
            for f in feats:
                counts.setdefault(f, Counter())[col] += 1
        vocab = sorted(counts)
        rows = {f: i for i, f in enumerate(vocab)}
        table = np.zeros((len(vocab), len(classes)))
        for f, per in counts.items():
            for col, n in per.items():
                table[rows[f], col] = n
        totals = table.sum(axis=0)
        table = np.log((table + alpha) / (totals + alpha * max(len(vocab), 1)))
        n = sum(docs)
        # A sector with no example keeps a tiny prior: the model never rules it out.
        prior = np.log((np.array(docs, dtype=float) + 0.5) / (n + 0.5 * len(classes)))
        return cls(classes, prior, rows, table, n)

    def log_probabilities(self, words: Sequence[str]) -> dict[str, float]:
        """Normalised log-probability of each sector given a text's words (see features())."""
        get = self.rows.get
        # The rows of features(words), without building its strings twice.
        rows = {i for w in words if (i := get(w)) is not None}
        rows.update(i for a, b in pairwise(words) if (i := get(f"{a} {b}")) is not None)
        # take + add.reduce, then plain floats: a third of the time of fancy indexing and
        # numpy scalars on 14 values (this runs once per classified text).
        logits: list[float] = ((np.add.reduce(self.table.take(list(rows), axis=0), axis=0)
                                + self.prior).tolist() if rows else self.prior.tolist())
        top = max(logits)
        norm = top + math.log(sum(math.exp(v - top) for v in logits))
        return {c: v - norm for c, v in zip(self.classes, logits, strict=True)}
