"""Rules of the classifier that are data too: phrases that mean different things in different
sectors (``[[ambiguous]]`` in ``config/sectors.toml``) and the script check of transcripts.

An ambiguous phrase has a default sector and, per other sector, cue phrases: when a cue occurs
within ``window`` tokens of the phrase, the phrase counts for that sector instead ("mất vệ
sinh" is a sanitation complaint, unless food is around: then it is food safety).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nlp.normalize import Normalized, Normalizer, PhraseIndex, is_syllable

AMBIGUOUS = "?"  # tag prefix of ambiguous phrases in the keyword index ("?3" = rule 3)


@dataclass(frozen=True, slots=True)
class Rule:
    """One ambiguous phrase set: its default sector and the cues that move it elsewhere."""

    index: int
    phrases: tuple[str, ...]
    default: str
    weight: float
    cues: Mapping[str, tuple[str, ...]]  # sector -> cue phrases
    window: int


def load_rules(config: Sequence[Mapping[str, Any]], weights: Mapping[str, float],
               sectors: Sequence[str]) -> list[Rule]:
    """Parse ``[[ambiguous]]`` tables; unknown sectors are a configuration error."""
    rules: list[Rule] = []
    for i, spec in enumerate(config):
        phrases = spec.get("phrases") or [spec["phrase"]]
        default = str(spec["default"])
        cues = {str(k): tuple(v) for k, v in dict(spec.get("cues", {})).items()}
        for code in (default, *cues):
            if code not in sectors:
                raise ValueError(f"[[ambiguous]] {phrases[0]!r}: unknown sector {code!r}")
        tier = str(spec.get("weight", "strong"))
        weight = float(weights[tier]) if tier in weights else float(tier)
        rules.append(Rule(i, tuple(phrases), default, weight, cues, int(spec.get("window", 8))))
    return rules


def cue_index(rules: Sequence[Rule], normalizer: Normalizer) -> PhraseIndex:
    """All cue phrases, tagged ``<rule index>:<sector>``."""
    index = PhraseIndex(normalizer)
    for rule in rules:
        for sector, phrases in rule.cues.items():
            for text in phrases:
                index.add(f"{rule.index}:{sector}", text, 1.0)
    return index


def resolve(rule: Rule, first: int, last: int, cues: Sequence[tuple[str, int, int]]) -> str:
    """The sector an ambiguous hit at tokens [first, last] counts for, given cue hits
    ``(tag, first, last)``: the nearest cue of this rule within its window, else the default."""
    best: tuple[int, str] | None = None
    prefix = f"{rule.index}:"
    for tag, a, b in cues:
        if not tag.startswith(prefix):
            continue
        if a <= last and b >= first:
            continue  # a cue inside the phrase itself is not context
        gap = a - last if a > last else first - b
        if gap <= rule.window and (best is None or gap < best[0]):
            best = (gap, tag[len(prefix):])
    return best[1] if best else rule.default


def latin_share(text: str) -> float:
    """Share of letters that are Latin (Vietnamese included); 1.0 for a text without letters."""
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return 1.0
    latin = sum("LATIN" in unicodedata.name(ch, "") for ch in letters)
    return latin / len(letters)


def looks_vietnamese(norm: Normalized, min_syllables: float = 0.7) -> bool:
    """A text in Vietnamese: Latin script, mostly Vietnamese syllables, with diacritics.

    Speech models answer in the language they were trained on when the audio is not theirs
    (the Korean stand-in model writes Hangul; Whisper may translate into English): such a
    transcript is not the citizen's report.
    """
    if latin_share(norm.original) < 0.9:
        return False
    words = [t.plain for t in norm.tokens if t.plain.isalpha()]
    if not words:
        return False
    share = sum(is_syllable(w) for w in words) / len(words)
    return share >= min_syllables and norm.has_diacritics


@dataclass(frozen=True, slots=True)
class Discourse:
    """How a letter is built (``[evidence]`` of sectors.toml): what follows a consequence marker
    ("gây", "tiềm ẩn", "ảnh hưởng đến") is a consequence, not the complaint; the first clause
    that names an object is the complaint's headline; a thank-you for work done is khac."""

    window: int = 4
    lead_factor: float = 1.0
    lead_min: float = 1.0
    resolved_factor: float = 1.0
    notice_min: int = 1_000_000  # distinct not-a-report markers that make a text a notice
    notice_factor: float = 1.0
    intro_window: int = 0  # words after "tôi là" that introduce the writer, not the report
    request_factor: float = 1.0  # objects named in the request sentence

    @classmethod
    def from_config(cls, raw: Mapping[str, Any]) -> Discourse:
        """Read the numbers of ``[evidence]`` (defaults: no effect)."""
        return cls(int(raw.get("consequence_window", 4)), float(raw.get("lead_factor", 1.0)),
                   float(raw.get("lead_min", 1.0)), float(raw.get("resolved_factor", 1.0)),
                   int(raw.get("notice_min", 1_000_000)), float(raw.get("notice_factor", 1.0)),
                   int(raw.get("self_intro_window", 0)),
                   float(raw.get("request_factor", 1.0)))


_CLAUSE_BREAKS = frozenset(",.;!?:\n()")
_SENTENCE_BREAKS = frozenset(".!?\n")


def segment_ids(text: str, spans: Sequence[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """Clause and sentence number of each token span: punctuation between two tokens starts a
    new clause (",.;!?:\\n()"), a full stop, "!", "?" or a line break a new sentence."""
    clauses: list[int] = []
    sentences: list[int] = []
    clause = sentence = 0
    prev_end = None
    for start, end in spans:
        if prev_end is not None and start > prev_end:
            gap = text[prev_end:start]
            if not _CLAUSE_BREAKS.isdisjoint(gap):
                clause += 1
                if not _SENTENCE_BREAKS.isdisjoint(gap):
                    sentence += 1
        clauses.append(clause)
        sentences.append(sentence)
        prev_end = end
    return clauses, sentences


def after_marker(first: int, clauses: Sequence[int], markers: Sequence[tuple[int, int]],
                 window: int) -> bool:
    """Whether a hit starting at token ``first`` follows a consequence marker closely, in the
    same clause ("... gây mất an ninh trật tự": the insecurity is the effect, not the report)."""
    return any(b < first and first - b <= window and clauses[b] == clauses[first]
               for _, b in markers)


def self_intros(norm: Normalized, clauses: Sequence[int], pronouns: frozenset[str],
                window: int, stops: frozenset[str] = frozenset()) -> list[tuple[int, int]]:
    """Spans (in non-filler token positions) of the words after "tôi là", "em là", "mình là":
    the writer introducing themselves, up to ``window`` words, a stop word ("ở", "sống": where
    they live is the setting) or the end of the clause. "là" is a spoken filler, so it is
    found on the full token list; ``clauses`` numbers the non-filler tokens (see
    :func:`segment_ids`)."""
    out: list[tuple[int, int]] = []
    pos = -1
    tokens = norm.tokens
    for i, tok in enumerate(tokens):
        if not tok.filler:
            pos += 1
        # The pronoun opens its clause ("Tôi là giáo viên, …"): without diacritics "… chiều
        # toi la sut ap" is "tối là sụt áp", not an introduction.
        if (tok.plain in pronouns and not tok.filler and i + 1 < len(tokens)
                and tokens[i + 1].plain == "la" and tokens[i + 1].text != "lá"
                and (pos == 0 or clauses[pos - 1] != clauses[pos])):
            first = pos + (1 if tokens[i + 1].filler else 2)  # after "là", filler or not
            end = first - 1
            words = [t for t in tokens[i + 2:] if not t.filler]
            for k, word in enumerate(words[:window]):
                if word.plain in stops or clauses[first + k] != clauses[pos]:
                    break
                end = first + k
            if end >= first:
                out.append((first, end))
    return out


def weigh(items: Sequence[tuple[int, str, str, float]], clauses: Sequence[int],
          markers: Sequence[tuple[int, int]], salute: set[int], disc: Discourse,
          khac: str, intro: Sequence[tuple[int, int]] = (),
          requests: Sequence[tuple[int, int]] = (),
          sentences: Sequence[int] = (),
          praise: Sequence[tuple[int, int]] = ()) -> list[tuple[str, float]]:
    """(role, value) of each hit ``(first token, sector, role, value)``, in order. Vietnamese
    letters state the problem first and its effects after "gây", "tiềm ẩn", "ảnh hưởng đến":
    an object right after such a marker counts as context, and the objects of the first clause
    that names one (the headline, not the "Kính gửi" line) count ``lead_factor``. The request
    ("Kính đề nghị ... thay nắp hố ga này") names again what is to be fixed: objects after a
    request marker in its sentence count ``request_factor``."""
    out: list[tuple[int, str, float]] = []
    for first, sector, role, value in items:
        if sector != khac and (any(a <= first <= b for a, b in intro) or any(
                b < first and sentences[b] == sentences[first] for _, b in praise)):
            # (or praised: "tôi hoan nghênh việc thành phố đã lát lại đá, trồng thêm cây" is
            # not what the letter asks to fix)
            # "Tôi là giáo viên, ...", "tôi là bác sĩ": who writes is not what is reported.
            value = 0.0
        elif role == "object" and sector != khac and markers and after_marker(
                first, clauses, markers, disc.window):
            role = "context"
        if (role == "object" and sector != khac and requests and disc.request_factor != 1.0
                and any(b < first and sentences[b] == sentences[first] for _, b in requests)):
            value *= disc.request_factor
        out.append((clauses[first], role, value))
    leads = [clause for (first, sector, _, _), (clause, role, value) in zip(items, out, strict=True)
             if role == "object" and sector != khac and value >= disc.lead_min
             and clause not in salute]
    if disc.lead_factor == 1.0 or not leads:
        return [(role, value) for _, role, value in out]
    lead = min(leads)
    return [(role, value * disc.lead_factor if role == "object" and clause == lead else value)
            for clause, role, value in out]


def rival_share(objects: Mapping[str, float], context: Mapping[str, float], cap: float,
                best: str, khac: str) -> float:
    """The strongest other sector's object and context evidence (before the context cap)
    relative to the winner's: a report that names two sectors' things needs a human."""
    raw = {k: objects[k] + min(context.get(k, 0.0), cap) for k in objects if k != khac}
    mine = raw.get(best, 0.0)
    if mine <= 0:
        return 1.0
    return max((v for k, v in raw.items() if k != best), default=0.0) / mine
