"""Fuzzy keyword classifier mapping a Vietnamese citizen report to a sector (DESIGN.md §5).

Keywords, weights, routing and thresholds live in ``config/sectors.toml``. A text is normalised
(:mod:`nlp.normalize`), its token n-grams are looked up on the diacritic-free shadow form, and
each hit is scored by how well the diacritics agree (or by a rapidfuzz ratio for tokens that
are not Vietnamese syllables, i.e. typos). Longer phrases win over the words inside them.
Evidence per sector becomes a probability with a softmax whose temperature and ``khac`` prior
are fitted on the labelled set (``bench/classify.py --fit``).

Review policy: ``needs_review`` is True when score < min_score, when score - runner_up_score
< min_margin, or when the sector rests on a single one-word keyword. ``khac``: empty text,
punctuation or fillers only -> khac, score 1.0, no review (nothing to route); greetings and
thanks -> khac with a high score, no review; content with no keyword -> khac with a low
score, so it goes to review (an operator should read an unclear message).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from rapidfuzz import fuzz, process

from nlp.normalize import Normalized, Normalizer, Phrase, PhraseIndex, Token, is_syllable
from nlp.place import Place, extract_places
from nlp.results import Classification, Match, Sector

__all__ = ["Classification", "Classifier", "Match", "Sector"]

KHAC = "khac"
_URGENT = "!urgent"  # pseudo-sector of the urgency phrases, indexed with the keywords

@dataclass(frozen=True, slots=True)
class _Prepared:
    norm: Normalized
    seq: list[Token]  # tokens without fillers
    alts: list[list[tuple[str, float]]]  # plain spellings per token (own, fuzzy fix)
    names: list[bool]  # token looks like a proper name


@dataclass(frozen=True, slots=True)
class _Analysis:
    evidence: dict[str, float]
    matches: list[Match]
    places: list[Place]
    urgent: tuple[str, ...]
    content: bool  # anything but punctuation and fillers
    support: dict[str, int]  # distinct phrases behind each sector's evidence


@dataclass(frozen=True, slots=True)
class _Hit:
    phrase: Phrase
    first: int  # index into the non-filler token sequence
    last: int
    similarity: float


class Classifier:
    """Sector classifier loaded from a ``sectors.toml`` configuration directory."""

    def __init__(self, config: Mapping[str, Any], normalizer: Normalizer, *,
                 min_score: float = 0.55, min_margin: float = 0.15) -> None:
        """Build the indexes from a parsed ``sectors.toml``."""
        self.config = config
        self.normalizer = normalizer
        self.min_score = min_score
        self.min_margin = min_margin
        scoring = config.get("scoring", {})
        self.length_bonus = float(scoring.get("length_bonus", 0.25))
        self.mismatch_unigram = float(scoring.get("mismatch_unigram", 0.75))
        self.mismatch_ngram = float(scoring.get("mismatch_ngram", 0.9))
        self.strict_plain = float(scoring.get("strict_plain", 0.5))
        self.fuzzy_cutoff = float(scoring.get("fuzzy_cutoff", 80))
        self.beta = float(scoring.get("beta", 1.0))
        self.khac_prior = float(scoring.get("khac_prior", 1.5))
        self.single_penalty = float(scoring.get("single_penalty", 0.0))
        self.review_single_word = bool(scoring.get("review_single_word", True))
        weights = {"strong": 3.0, "medium": 2.0, "weak": 1.0, "extra": 2.0, "negative": 2.0}
        weights.update(config.get("weights", {}))
        weights.setdefault("extra", weights["medium"])
        self.sectors: dict[str, Sector] = {}
        self.keywords = PhraseIndex(normalizer)
        for code, spec in config["sectors"].items():
            self.sectors[code] = Sector(
                code, spec["name"], spec.get("description", ""), spec["agency"],
                spec["agency_code"], tuple(spec.get("co_agencies", ())),
            )
            for tier in ("weak", "medium", "extra", "strong"):
                for text in spec.get(tier, ()):
                    self.keywords.add(code, text, float(weights[tier]))
            for text in spec.get("negative", ()):
                self.keywords.add(code, text, -float(weights["negative"]))
        for text in config.get("neutral", {}).get("phrases", ()):
            self.keywords.add("", text, 0.0)
        if KHAC not in self.sectors:
            raise ValueError("sectors.toml must define the 'khac' sector")
        for text in config.get("urgent", {}).get("phrases", ()):
            self.keywords.add(_URGENT, text, 1.0)
        routing = config.get("routing", {})
        self.officials = self._side_index(routing.get("officials", ()))
        self.misconduct_terms = self._side_index(routing.get("misconduct", ()))
        self.misconduct_agency = str(routing.get("misconduct_agency", "Thanh tra tỉnh"))
        self.misconduct_agency_code = str(routing.get("misconduct_agency_code", "thanh_tra"))
        self.vocabulary = sorted(
            {p for key, phs in self.keywords.by_plain.items() for p in key
             if any(ph.sector != _URGENT for ph in phs)}
        )
        self._vocab_set = frozenset(self.vocabulary)
        self._correct = lru_cache(maxsize=65536)(self._correct_uncached)
        # The dialog, the summary and the submission look at the same texts: classify each
        # distinct text once (results are frozen, so sharing them is safe).
        self._memo = lru_cache(maxsize=4096)(self._classify)

    def _side_index(self, phrases: Iterable[str]) -> PhraseIndex:
        index = PhraseIndex(self.normalizer)
        for text in phrases:
            index.add("", text, 1.0)
        return index

    @classmethod
    def load(cls, config_dir: Path | None = None, *,
             min_score: float = 0.55, min_margin: float = 0.15) -> Classifier:
        """Load ``sectors.toml`` and ``normalize.toml`` (packaged ``config`` by default)."""
        if config_dir is None:
            sectors_text = files("config").joinpath("sectors.toml").read_text("utf-8")
            normalizer = Normalizer.load()
        else:
            config_dir = Path(config_dir)
            sectors_text = (config_dir / "sectors.toml").read_text("utf-8")
            norm_path = config_dir / "normalize.toml"
            normalizer = Normalizer.load(norm_path if norm_path.exists() else None)
        config = tomllib.loads(sectors_text)
        return cls(config, normalizer, min_score=min_score, min_margin=min_margin)

    # -- matching ---------------------------------------------------------------------------

    def _correct_uncached(self, plain: str) -> tuple[str, float] | None:
        """Fuzzy-correct a non-syllable token against the keyword vocabulary."""
        found = process.extractOne(
            plain, self.vocabulary, scorer=fuzz.ratio, score_cutoff=self.fuzzy_cutoff
        )
        return (found[0], found[1] / 100.0) if found else None

    def _alternatives(self, token: Token) -> list[tuple[str, float]]:
        """Plain spellings a token may stand for, with 1.0 or a fuzzy similarity."""
        alts = [(token.plain, 1.0)]
        plain = token.plain
        if (
            len(plain) >= 4
            and plain not in self._vocab_set
            and plain.isalpha()
            and not is_syllable(plain)
        ):
            fixed = self._correct(plain)
            if fixed is not None:
                alts.append(fixed)
        return alts

    def _token_sim(self, phrase: Phrase, word: str, tok: Token, fz: float, n: int,
                   marked_text: bool, name: bool) -> float:
        if fz < 1.0:
            return 0.0 if phrase.strict or name else fz
        if word == tok.text:
            return 1.0
        if name:  # "Trần" is a surname, not a misspelt "tràn"; "Le Loi" is not "lỗi"
            return 0.0
        # Same shadow, different diacritics. In SMS-style text the shadow is all we have; in
        # a text with diacritics it is a typo ("ngâp") or a different word ("đến" vs "đèn").
        if not marked_text:
            return self.strict_plain if phrase.strict else 1.0
        if phrase.strict:
            return 0.0
        return self.mismatch_unigram if n == 1 else self.mismatch_ngram

    def _scan(self, prep: _Prepared, index: PhraseIndex) -> list[_Hit]:
        """All phrase hits: n-grams of shadows (and fuzzy fixes) looked up in ``index``."""
        hits: list[_Hit] = []
        seq, alts, names = prep.seq, prep.alts, prep.names
        marked = prep.norm.has_diacritics
        prefixes, by_plain = index.prefixes, index.by_plain
        simple = all(len(a) == 1 for a in alts)  # no fuzzy variants: plain tuple keys
        for a in range(len(seq)):
            stop = min(len(seq), a + index.max_len)
            keys: list[tuple[int, tuple[str, ...], tuple[float, ...]]] = []
            if simple:
                key: tuple[str, ...] = ()
                for b in range(a, stop):
                    key = (*key, alts[b][0][0])
                    if key not in prefixes:
                        break
                    if key in by_plain:
                        keys.append((b, key, (1.0,) * len(key)))
            else:
                partial: list[tuple[tuple[str, ...], tuple[float, ...]]] = [((), ())]
                for b in range(a, stop):
                    partial = [((*k, p), (*f, fs)) for k, f in partial for p, fs in alts[b]
                               if (*k, p) in prefixes]
                    keys += [(b, k, f) for k, f in partial if k in by_plain]
            for b, key, fzs in keys:
                for phrase in by_plain[key]:
                    sim = 1.0
                    for j, word in enumerate(phrase.tokens):
                        tok = seq[a + j]
                        if word != tok.text or fzs[j] < 1.0:
                            sim *= self._token_sim(
                                phrase, word, tok, fzs[j], len(key), marked, names[a + j]
                            )
                    if sim > 0.0:
                        hits.append(_Hit(phrase, a, b, sim))
        return hits

    def _prepare(self, text: str) -> _Prepared:
        norm = self.normalizer.normalize(text)
        seq = [t for t in norm.tokens if not t.filler]
        # A capitalised word inside a sentence is a proper name ("Lê Lợi", "Trần Phú"); it
        # only matches keywords exactly. Texts in ALL CAPS or Title Case are exempt.
        caps = [t.surface[:1].isupper() for t in seq]
        names = [False] * len(seq)
        if sum(caps) * 2 <= len(seq):
            for i in range(1, len(seq)):
                gap = text[seq[i - 1].end : seq[i].start]
                names[i] = caps[i] and not any(ch in gap for ch in ".!?:\n")
        return _Prepared(norm, seq, [self._alternatives(t) for t in seq], names)

    def _select(self, hits: list[_Hit]) -> tuple[list[_Hit], list[_Hit], set[tuple[int, int]]]:
        """Greedy longest-first non-overlapping hits, negatives, and all accepted spans."""
        negatives = [h for h in hits if h.phrase.weight < 0]
        # A neutral phrase matched only through its shadow does not block anything; on equal
        # length it wins over keywords ("hàng xóm" keeps "nhà hàng" out of "nhà hàng xóm").
        positives = [
            h for h in hits
            if h.phrase.weight > 0 or (h.phrase.sector == "" and h.similarity >= 0.5)
        ]
        positives.sort(
            key=lambda h: (h.first - h.last, h.phrase.sector != "", -h.phrase.weight * h.similarity)
        )
        owner: dict[int, tuple[int, int, bool]] = {}
        chosen: list[_Hit] = []
        for hit in positives:
            span = range(hit.first, hit.last + 1)
            taken = [owner[i] for i in span if i in owner]
            neutral = hit.phrase.sector == ""
            # Free tokens, or exactly the span of another sector's keyword (a shared phrase).
            if taken and not all(o == (hit.first, hit.last, False) for o in taken):
                continue
            if taken and neutral:
                continue
            if taken and any(
                c.first == hit.first and c.last == hit.last and c.phrase.sector == hit.phrase.sector
                for c in chosen
            ):
                continue  # "cám ơn" and "cảm ơn" on the same words: keep the better one
            for i in span:
                owner[i] = (hit.first, hit.last, neutral)
            if not neutral:
                chosen.append(hit)
        return chosen, negatives, {(a, b) for a, b, _ in owner.values()}

    def _analyse(self, text: str) -> _Analysis:
        """Evidence per sector, accepted matches, places and urgency terms of ``text``."""
        prep = self._prepare(text)
        seq = prep.seq
        places = extract_places(prep.norm)
        # Words of an address ("đường Lê Lợi", "phường Tân Định", "hẻm 45") are not evidence;
        # for a landmark only its name is skipped ("chợ" of "chợ Đông Ba" still counts).
        blocked = [
            (p.name_start if p.kind == "landmark" else p.start, p.end)
            for p in places
            if p.confident
        ]
        hits, urgent_hits = [], []
        for h in self._scan(prep, self.keywords):
            if h.phrase.sector == _URGENT:
                if h.similarity >= 0.7:
                    urgent_hits.append(h)
            elif not any(s <= seq[h.first].start and seq[h.last].end <= e for s, e in blocked):
                hits.append(h)
        chosen, negatives, spans = self._select(hits)
        # An urgency word inside a longer non-urgent phrase is not urgent: "cháy" in
        # "bóng đèn bị cháy" (a burnt-out bulb) is not a fire.
        urgent_spans = {(h.first, h.last) for h in urgent_hits}
        urgent = [
            h.phrase.text for h in urgent_hits
            if not any(a <= h.first and h.last <= b and (a, b) not in urgent_spans
                       and b - a > h.last - h.first for a, b in spans)
        ]
        scores = dict.fromkeys(self.sectors, 0.0)
        seen: set[tuple[str, str]] = set()
        matches: list[Match] = []
        for hit in sorted(chosen, key=lambda h: h.first):
            ph = hit.phrase
            if (ph.sector, ph.text) in seen:  # repeated in a long letter: still one complaint
                continue
            seen.add((ph.sector, ph.text))
            bonus = 1.0 + self.length_bonus * (len(ph.tokens) - 1)
            scores[ph.sector] += ph.weight * hit.similarity * bonus
            start, end = seq[hit.first].start, seq[hit.last].end
            matches.append(
                Match(ph.sector, ph.text, text[start:end], start, end, ph.weight, hit.similarity)
            )
        for hit in negatives:
            scores[hit.phrase.sector] += hit.phrase.weight * hit.similarity
        # Greetings and thanks frame most real reports ("... xin cảm ơn"): they only speak
        # for khac by what they exceed the strongest real sector.
        scores[KHAC] -= max(v for k, v in scores.items() if k != KHAC)
        evidence = {k: max(v, 0.0) for k, v in scores.items()}
        content = any(not t.filler for t in prep.norm.tokens)
        support = dict.fromkeys(self.sectors, 0)
        for m in matches:
            support[m.sector] += 1
        return _Analysis(evidence, matches, places, tuple(dict.fromkeys(urgent)), content, support)

    def evidence(self, text: str) -> dict[str, float]:
        """Raw (uncalibrated) evidence per sector for ``text``."""
        return self._analyse(text).evidence

    def probabilities(
        self, evidence: Mapping[str, float], support: Mapping[str, int] | None = None
    ) -> dict[str, float]:
        """Softmax of the evidence; ``khac`` gets the prior so that no evidence means khac.

        A sector resting on a single phrase is penalised: one keyword is wrong far more
        often than two or three that agree (see the reliability table of the bench).
        """
        support = support or {}
        logits = {
            code: self.beta * (ev + (self.khac_prior if code == KHAC else 0.0))
            - (self.single_penalty if code != KHAC and support.get(code) == 1 else 0.0)
            for code, ev in evidence.items()
        }
        top = max(logits.values())
        exp = {code: math.exp(v - top) for code, v in logits.items()}
        total = sum(exp.values())
        return {code: v / total for code, v in exp.items()}

    def _found(self, index: PhraseIndex, prep: _Prepared) -> bool:
        return any(h.similarity >= 0.7 for h in self._scan(prep, index))

    # -- public API -------------------------------------------------------------------------

    def classify(self, text: str) -> Classification:
        """Classify one report text (the same text in this process is classified once)."""
        return self._memo(text or "")

    def _classify(self, text: str) -> Classification:
        an = self._analyse(text)
        evidence, urgent_terms = an.evidence, an.urgent
        address = ", ".join(p.text for p in an.places) or None
        if not an.content:
            # Empty, punctuation or pure filler ("alo", "dạ"): nothing to route or review.
            return Classification(KHAC, 1.0, False, None, 0.0, (), False, (), None, evidence)
        probs = self.probabilities(evidence, an.support)
        ranked = sorted(probs, key=lambda c: (-probs[c], -evidence[c]))
        best, second = ranked[0], ranked[1]
        score, second_score = probs[best], probs[second]
        runner_up = second if evidence[second] > 0 or second == KHAC else None
        needs_review = score < self.min_score or (score - second_score) < self.min_margin
        # Policy on top of the thresholds: a sector resting on one single-word keyword is
        # right well under half the time on our set (bench reliability), so it is reviewed.
        top = [m for m in an.matches if m.sector == best]
        if self.review_single_word and best != KHAC and len(top) == 1 and " " not in top[0].phrase:
            needs_review = True
        return Classification(
            best, score, needs_review, runner_up, second_score, tuple(an.matches),
            bool(urgent_terms), urgent_terms, address, evidence,
        )

    def is_misconduct(self, text: str) -> bool:
        """True when the text accuses an official of misconduct (inspectorate's case)."""
        prep = self._prepare(text)
        return self._found(self.officials, prep) and self._found(self.misconduct_terms, prep)

    def route(self, sector: str, text: str = "") -> Sector:
        """Handling agency for ``sector``; misconduct of officials goes to Thanh tra."""
        base = self.sectors.get(sector) or self.sectors[KHAC]
        if text and self.is_misconduct(text):
            return replace(base, agency=self.misconduct_agency, co_agencies=(),
                           agency_code=self.misconduct_agency_code, reason="misconduct")
        return base
