"""Fuzzy keyword classifier mapping a Vietnamese citizen report to a sector (DESIGN.md §5).

Keywords, weights, roles, rules, routing and thresholds live in ``config/sectors.toml``. Phrases
are found on the diacritic-free shadow (:mod:`nlp.matcher`), longer phrases win, guards consume
words without evidence. An *object* phrase (đèn, cống, rác …) outweighs *context* (đường, học
sinh, bệnh viện …); objects after a consequence marker ("gây", "tiềm ẩn") count as context and
the headline clause counts more (:func:`nlp.rules.weigh`); ``[[ambiguous]]`` rules resolve
phrases by their neighbours. A softmax turns evidence into a score. Review (``reasons``): low
score or margin, context only, one weak phrase, a rival sector, short or empty text, urgent,
an official's misconduct.
"""

from __future__ import annotations

import math
import tomllib
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import replace
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from nlp.matcher import Hit, Matcher, Prepared, Similarity, select_hits
from nlp.normalize import Normalizer, PhraseIndex
from nlp.place import Place, extract_places
from nlp.results import Analysis, Classification, Match, Sector
from nlp.review import ReviewPolicy, review_reasons
from nlp.rules import (
    AMBIGUOUS,
    Discourse,
    after_marker,
    cue_index,
    load_rules,
    resolve,
    segment_ids,
    self_intros,
    weigh,
)
from nlp.second_opinion import OpinionPolicy, SecondOpinion, features, learnt, read_examples

__all__ = ["Classification", "Classifier", "Match", "Sector"]

KHAC = "khac"
# Pseudo-sectors indexed with the keywords, so one scan finds them all.
_URGENT, _OFFICIAL, _MISCONDUCT = "!urgent", "!official", "!misconduct"
_CONSEQUENCE, _THANKS, _RESOLVED, _SALUTE = "!consequence", "!thanks", "!resolved", "!salute"
_NOTICE, _COMPLAINT, _QUESTION = "!notice", "!complaint", "!question"
_REQUEST, _NOT_NOW, _PRAISE = "!request", "!not_now", "!praise"
_SIDE = frozenset({_URGENT, _OFFICIAL, _MISCONDUCT, _CONSEQUENCE, _THANKS, _RESOLVED, _SALUTE,
                   _NOTICE, _COMPLAINT, _QUESTION, _REQUEST, _NOT_NOW, _PRAISE})


def _blocked(places: list[Place]) -> list[tuple[int, int]]:
    """Character spans of confident addresses: their words are not evidence ("đường Lê Lợi",
    "phường Tân Định", "hẻm 45"); of a landmark only the name ("chợ" of "chợ Đông Ba" counts)."""
    return [(p.name_start if p.kind == "landmark" else p.start, p.end)
            for p in places if p.confident]


def _words(prep: Prepared, blocked: list[tuple[int, int]]) -> tuple[str, ...]:
    """Diacritic-free alphabetic words outside ``blocked`` (house numbers say nothing)."""
    return tuple(t.plain for t in prep.seq if t.plain.isalpha()
                 and not any(s <= t.start and t.end <= e for s, e in blocked))


class Classifier:
    """Sector classifier loaded from a ``sectors.toml`` configuration directory."""

    def __init__(self, config: Mapping[str, Any], normalizer: Normalizer, *,
                 min_score: float = 0.9, min_margin: float = 0.15) -> None:
        """Build the indexes from a parsed ``sectors.toml``."""
        self.config = config
        self.normalizer = normalizer
        scoring = config.get("scoring", {})
        self.length_bonus = float(scoring.get("length_bonus", 0.25))
        self.beta = float(scoring.get("beta", 1.0))
        self.khac_prior = float(scoring.get("khac_prior", 1.5))
        self.single_penalty = float(scoring.get("single_penalty", 0.0))
        self.context_share = float(scoring.get("context_share", 0.5))
        self.context_cap = float(scoring.get("context_cap", 4.0))
        self.review = ReviewPolicy.from_config(config, min_score, min_margin)
        self.opinion_policy = OpinionPolicy.from_config(config.get("second_opinion", {}))
        self.second_opinion: SecondOpinion | None = None  # see learn()
        self.examples_dir: Path | None = None  # the labelled examples it learns (load())
        review = config.get("review", {})
        weights = {"strong": 3.0, "medium": 2.0, "weak": 1.0, "extra": 2.0, "negative": 2.0,
                   "context": 1.5}
        weights.update(config.get("weights", {}))
        weights.setdefault("extra", weights["medium"])
        weights.setdefault("english", weights["strong"])
        self.sectors: dict[str, Sector] = {}
        self.keywords = PhraseIndex(normalizer,
                                    config.get("matching", {}).get("common_words", ()))
        # A phrase with an [[ambiguous]] rule counts only through its rule.
        # ("nứt" of a sector's list is the rule's "nứt!": the strict mark does not matter here)
        ruled = {p.rstrip("!") for spec in config.get("ambiguous", ())
                 for p in (spec.get("phrases") or [spec.get("phrase", "")])}
        for code, spec in config["sectors"].items():
            self.sectors[code] = Sector(
                code, spec["name"], spec.get("description", ""), spec["agency"],
                spec["agency_code"], tuple(spec.get("co_agencies", ())),
            )
            for tier in ("weak", "medium", "extra", "strong", "english"):
                for text in spec.get(tier, ()):
                    if text.rstrip("!") not in ruled:
                        self.keywords.add(code, text, float(weights[tier]))
            for text in spec.get("context", ()):
                self.keywords.add(code, text, float(weights["context"]), "context")
            for text in spec.get("negative", ()):
                self.keywords.add(code, text, -float(weights["negative"]))
        if KHAC not in self.sectors:
            raise ValueError("sectors.toml must define the 'khac' sector")
        for text in config.get("neutral", {}).get("phrases", ()):
            self.keywords.add("", text, 0.0)
        self.rules = load_rules(config.get("ambiguous", ()), weights, list(self.sectors))
        for rule in self.rules:
            for text in rule.phrases:
                self.keywords.add(f"{AMBIGUOUS}{rule.index}", text, rule.weight)
        self.cues = cue_index(self.rules, normalizer)
        routing = config.get("routing", {})
        urgent_cfg = config.get("urgent", {})
        self.not_now_window = int(urgent_cfg.get("not_now_window", 0))
        for tag, phrases in ((_URGENT, urgent_cfg.get("phrases", ())),
                             (_NOT_NOW, urgent_cfg.get("not_now", ())),
                             (_OFFICIAL, routing.get("officials", ())),
                             (_MISCONDUCT, routing.get("misconduct", ())),
                             (_QUESTION, review.get("question", ()))):
            self._add_side(tag, phrases)
        self.discourse = Discourse.from_config(discourse := config.get("evidence", {}))
        for tag, key in ((_CONSEQUENCE, "consequence"), (_THANKS, "thanks"),
                         (_RESOLVED, "resolved"), (_SALUTE, "salutation"),
                         (_NOTICE, "not_report"), (_COMPLAINT, "complaint"),
                         (_REQUEST, "request"), (_PRAISE, "praise")):
            self._add_side(tag, discourse.get(key, ()))
        self.intro_pronouns = frozenset(discourse.get("self_intro", ()))
        self.intro_stops = frozenset(discourse.get("self_intro_stops", ()))
        self.misconduct_agency = str(routing.get("misconduct_agency", "Thanh tra tỉnh"))
        self.misconduct_agency_code = str(routing.get("misconduct_agency_code", "thanh_tra"))
        vocabulary = sorted({p for key, phs in self.keywords.by_plain.items() for p in key
                             if any(ph.sector not in _SIDE for ph in phs)})
        self.vocabulary = vocabulary
        sim = Similarity(
            float(scoring.get("mismatch_unigram", 0.75)), float(scoring.get("mismatch_ngram", 0.9)),
            float(scoring.get("strict_plain", 0.5)),
            float(scoring.get("strict_plain_unigram", scoring.get("strict_plain", 0.5))))
        self.matcher = Matcher(normalizer, vocabulary, float(scoring.get("fuzzy_cutoff", 80)),
                               sim, self.keywords.common)
        # The dialog, the summary and the submission look at the same texts: classify each
        # distinct text once (results are frozen, so sharing them is safe).
        self._memo = lru_cache(maxsize=4096)(self._classify)

    def _add_side(self, tag: str, phrases: Iterable[str]) -> None:
        for text in phrases:
            self.keywords.add(tag, text, 1.0)

    @classmethod
    def load(cls, config_dir: Path | None = None, *,
             min_score: float = 0.9, min_margin: float = 0.15,
             sectors_file: Path | None = None, learn: bool = True,
             examples: Sequence[tuple[str, str]] = ()) -> Classifier:
        """Load ``sectors.toml`` and ``normalize.toml`` (packaged ``config`` by default) and
        learn the second opinion from ``examples/*.jsonl`` beside them and ``examples``
        (operators' judgements; ``learn=False``: keywords alone); ``sectors_file`` replaces
        the taxonomy (a proposed file under evaluation)."""
        root = files("config") if config_dir is None else Path(config_dir)
        normalizer = Normalizer.load(None if config_dir is None else (
            norm if (norm := Path(config_dir) / "normalize.toml").exists() else None))
        sectors_text = (Path(sectors_file) if sectors_file is not None
                        else root.joinpath("sectors.toml")).read_text("utf-8")
        clf = cls(tomllib.loads(sectors_text), normalizer, min_score=min_score,
                  min_margin=min_margin)
        clf.examples_dir = Path(str(root.joinpath("examples")))
        if learn:
            clf.learn_examples(examples)
        return clf

    def learn_examples(self, extra: Sequence[tuple[str, str]] = ()) -> None:
        """Learn the labelled lines of ``examples/*.jsonl`` and ``extra`` (operators'
        judgements); a model learnt from the same files is reused in this process."""
        folder = self.examples_dir
        paths = sorted(folder.glob("*.jsonl")) if folder and folder.is_dir() else []
        key = (tuple(self.sectors), *((str(p), p.stat().st_mtime_ns) for p in paths))
        self.learn(lambda: [*read_examples(paths), *extra], None if extra else key)

    def learn(self, examples: Iterable[tuple[str, str]] | Callable[[], Iterable[tuple[str, str]]],
              key: Hashable = None) -> None:
        """(Re)train the second opinion on (text, sector) pairs (none: keywords alone); a model
        learnt under the same ``key`` in this process is reused (tests start many apps)."""
        def train() -> SecondOpinion | None:
            pairs = []
            for text, sector in examples() if callable(examples) else examples:
                if text.strip():
                    prep = self.matcher.prepare(text)
                    words = _words(prep, _blocked(extract_places(prep.norm)))
                    pairs.append((features(words), sector))
            return (SecondOpinion.train(pairs, list(self.sectors), self.opinion_policy.alpha)
                    if pairs else None)
        self.second_opinion = learnt(key, train) if key is not None else train()
        self._memo.cache_clear()

    # -- matching ---------------------------------------------------------------------------

    def _resolved(self, prep: Prepared, chosen: list[Hit]) -> list[tuple[Hit, str]]:
        """Each chosen hit with the sector it counts for (ambiguous phrases by their rule)."""
        if not any(h.phrase.sector.startswith(AMBIGUOUS) for h in chosen):
            return [(h, h.phrase.sector) for h in chosen]
        cues = [(h.phrase.sector, h.first, h.last) for h in self.matcher.scan(prep, self.cues)
                if h.similarity >= 0.7]
        out = []
        for h in chosen:
            tag = h.phrase.sector
            if tag.startswith(AMBIGUOUS):
                out.append((h, resolve(self.rules[int(tag[1:])], h.first, h.last, cues)))
            else:
                out.append((h, tag))
        return out

    def _analyse(self, text: str) -> Analysis:
        """Evidence per sector, accepted matches, places and urgency terms of ``text``."""
        prep = self.matcher.prepare(text)
        seq = prep.seq
        places = extract_places(prep.norm)
        blocked = _blocked(places)
        hits: list[Hit] = []
        side: dict[str, list[Hit]] = {tag: [] for tag in _SIDE}
        for h in self.matcher.scan(prep, self.keywords):
            tag = h.phrase.sector
            if tag in _SIDE:
                # Discourse markers change a whole verdict: with diacritics they must be
                # spelt right ("dân đến" is not "dẫn đến"); without, the shadow is enough.
                if h.similarity >= 0.95:
                    side[tag].append(h)
            elif not any(s <= seq[h.first].start and seq[h.last].end <= e for s, e in blocked):
                hits.append(h)
        chosen, negatives, spans = select_hits(hits)
        # An urgency word inside a longer non-urgent phrase is not urgent: "cháy" in
        # "bóng đèn bị cháy" (a burnt-out bulb) is not a fire.
        urgent_spans = {(h.first, h.last) for h in side[_URGENT]}
        # A danger that is feared or past ("nếu có cháy", "tôi sợ cây đổ đè lên người",
        # "tháng trước đã có vụ tông chết người") is a risk to report, not an emergency now.
        clauses, sentences = segment_ids(text, [(t.start, t.end) for t in seq])
        not_now = [(h.first, h.last) for h in side[_NOT_NOW]]
        urgent = [
            h.phrase.text for h in side[_URGENT]
            if not any(a <= h.first and h.last <= b and (a, b) not in urgent_spans
                       and b - a > h.last - h.first for a, b in spans)
            and not (not_now and after_marker(h.first, clauses, not_now, self.not_now_window))
        ]
        objects = dict.fromkeys(self.sectors, 0.0)
        context = dict.fromkeys(self.sectors, 0.0)
        seen: set[tuple[str, str]] = set()
        matches: list[Match] = []
        for hit, sector, role, value in self._weigh(prep, chosen, side, clauses, sentences):
            ph = hit.phrase
            if (sector, ph.text) in seen:  # repeated in a long letter: still one complaint
                continue
            seen.add((sector, ph.text))
            (context if role == "context" else objects)[sector] += value
            start, end = seq[hit.first].start, seq[hit.last].end
            matches.append(Match(sector, ph.text, text[start:end], start, end, ph.weight,
                                 hit.similarity, role))
        for hit in negatives:
            objects[hit.phrase.sector] += hit.phrase.weight * hit.similarity
        factor = 1.0
        if side[_THANKS] and side[_RESOLVED] and not side[_REQUEST]:
            # "Cảm ơn ... đèn đã sáng trở lại": a thank-you for work done names the old
            # problem, but there is nothing left to route.
            factor = self.discourse.resolved_factor
        elif (len({h.phrase.text for h in side[_NOTICE]})
              - len({h.phrase.text for h in side[_COMPLAINT]}) >= self.discourse.notice_min):
            # A forwarded notice, an advertisement or a request for information names things
            # of every sector ("tạm ngừng cung cấp điện", "căn cước công dân") but asks no one
            # to fix anything: khac, unless complaint markers say otherwise ("trân trọng thông
            # báo ... đề nghị mỗi hộ cử đại diện" is still a notice).
            factor = self.discourse.notice_factor
        if factor != 1.0:
            for bag in (objects, context):
                for code in bag:
                    if code != KHAC:
                        bag[code] *= factor
        scores = self._combine(objects, context)
        # Greetings and thanks frame most real reports ("... xin cảm ơn"): they only speak
        # for khac by what they exceed the strongest real sector.
        scores[KHAC] -= max(v for k, v in scores.items() if k != KHAC)
        evidence = {k: max(v, 0.0) for k, v in scores.items()}
        content = sum(not t.filler for t in prep.norm.tokens)
        misconduct = bool(side[_OFFICIAL]) and bool(side[_MISCONDUCT])
        return Analysis(evidence, matches, places, tuple(dict.fromkeys(urgent)), content,
                        objects, misconduct, context, bool(side[_QUESTION]),
                        _words(prep, blocked) if self.second_opinion else ())

    def _weigh(self, prep: Prepared, chosen: list[Hit], side: Mapping[str, list[Hit]],
               clauses: list[int], sentences: list[int]) -> list[tuple[Hit, str, str, float]]:
        """Each hit with its sector, role and value in text order (see :func:`nlp.rules.weigh`:
        consequences count as context, the headline clause counts more)."""
        pairs = sorted(self._resolved(prep, chosen), key=lambda p: p[0].first)
        items = [(h.first, sector, h.phrase.role, h.phrase.weight * h.similarity
                  * (1.0 + self.length_bonus * (len(h.phrase.tokens) - 1)))
                 for h, sector in pairs]
        weighed = weigh(items, clauses, [(h.first, h.last) for h in side[_CONSEQUENCE]],
                        {clauses[h.first] for h in side[_SALUTE]}, self.discourse, KHAC,
                        self_intros(prep.norm, clauses, self.intro_pronouns,
                                    self.discourse.intro_window, self.intro_stops),
                        [(h.first, h.last) for h in side[_REQUEST]], sentences,
                        [(h.first, h.last) for h in side[_PRAISE]])
        return [(h, sector, role, value)
                for (h, sector), (role, value) in zip(pairs, weighed, strict=True)]

    def _combine(self, objects: dict[str, float], context: dict[str, float]) -> dict[str, float]:
        """Object evidence plus context; context alone never outvotes an object."""
        top = max((v for k, v in objects.items() if k != KHAC), default=0.0)
        out: dict[str, float] = {}
        for code, obj in objects.items():
            ctx = min(context[code], self.context_cap)
            if obj > 0 or top <= 0:
                out[code] = obj + ctx
            else:
                out[code] = min(obj + ctx, self.context_share * top)
        return out

    def evidence(self, text: str) -> dict[str, float]:
        """Raw (uncalibrated) evidence per sector for ``text``."""
        return self._analyse(text).evidence

    def probabilities(
        self, evidence: Mapping[str, float], support: Mapping[str, int] | None = None
    ) -> dict[str, float]:
        """Softmax of the evidence; ``khac`` gets the prior so that no evidence means khac.

        A sector resting on a single phrase may be penalised (``single_penalty``).
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

    # -- public API -------------------------------------------------------------------------

    def classify(self, text: str) -> Classification:
        """Classify one report text (the same text in this process is classified once)."""
        return self._memo(text or "")

    def classify_fresh(self, text: str) -> Classification:
        """Classify without the per-text memo (benchmarks measure the real work with this)."""
        return self._classify(text or "")

    def _classify(self, text: str) -> Classification:
        an = self._analyse(text)
        evidence, urgent_terms = an.evidence, an.urgent
        address = ", ".join(p.text for p in an.places) or None
        if not an.content:
            # Empty or pure filler ("alo", "dạ", a call whose words were lost): an operator looks.
            reasons: tuple[str, ...] = ("empty",) if self.review.empty else ()
            return Classification(KHAC, 1.0, bool(reasons), None, 0.0, (), False, (), None,
                                  evidence, reasons, "none", False)
        counts = Counter(m.sector for m in an.matches)
        probs = self.probabilities(evidence, {code: counts[code] for code in self.sectors})
        opinion, lean = None, None
        alone = max(probs, key=lambda c: (probs[c], evidence[c]))  # the keywords' own verdict
        if self.second_opinion is not None:
            # The learnt model's log-probabilities join the keywords' with a small weight.
            opinion = logs = self.second_opinion.log_probabilities(an.words)
            lean = max(logs, key=logs.__getitem__)
            if w := self.opinion_policy.weight:
                mixed = [math.log(max(p, 1e-12)) + w * logs[c] for c, p in probs.items()]
                top = max(mixed)
                exp = [math.exp(v - top) for v in mixed]
                total = sum(exp)
                probs = dict(zip(probs, (e / total for e in exp), strict=True))
        ranked = sorted(probs, key=lambda c: (-probs[c], -evidence[c]))
        best, second = ranked[0], ranked[1]
        score, second_score = probs[best], probs[second]
        # The sector an operator would switch to: one the keywords or the learnt model saw.
        runner_up = next((c for c in ranked[1:] if evidence[c] > 0 or c in (KHAC, lean)), None)
        kind = "object" if an.objects[best] > 0 else "context" if evidence[best] > 0 else "none"
        reasons = review_reasons(self.review, an, best, score, second_score, kind,
                                 (opinion, alone, self.opinion_policy) if opinion else None)
        return Classification(
            best, score, bool(reasons), runner_up, second_score, tuple(an.matches),
            bool(urgent_terms), urgent_terms, address, evidence, reasons, kind, an.misconduct,
            lean,
        )

    def route(self, sector: str, text: str = "") -> Sector:
        """Handling agency for ``sector``; misconduct of officials goes to the inspectorate
        named in ``[routing]``, never to the body accused."""
        base = self.sectors.get(sector) or self.sectors[KHAC]
        if text and self.classify(text).misconduct:
            return replace(base, agency=self.misconduct_agency, co_agencies=(),
                           agency_code=self.misconduct_agency_code, reason="misconduct")
        return base
