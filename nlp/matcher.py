"""Phrase matching of the classifier: token n-grams of the diacritic-free shadow looked up in
a :class:`~nlp.normalize.PhraseIndex`, each hit scored by how well the diacritics agree (or by
a rapidfuzz ratio for tokens that are not Vietnamese syllables, i.e. typos)."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from rapidfuzz import fuzz, process

from nlp.normalize import Normalized, Normalizer, Phrase, PhraseIndex, Token, is_syllable


@dataclass(frozen=True, slots=True)
class Prepared:
    """A normalised text ready for matching."""

    norm: Normalized
    seq: list[Token]  # tokens without fillers
    alts: list[list[tuple[str, float]]]  # plain spellings per token (own, fuzzy fix)
    names: list[bool]  # token looks like a proper name


@dataclass(frozen=True, slots=True)
class Hit:
    """A phrase found at tokens [first, last] of the non-filler sequence."""

    phrase: Phrase
    first: int
    last: int
    similarity: float


@dataclass(frozen=True, slots=True)
class Similarity:
    """How a token matched only through its shadow counts (see ``[scoring]``)."""

    mismatch_unigram: float = 0.75
    mismatch_ngram: float = 0.9
    strict_plain: float = 0.25
    strict_plain_unigram: float = 0.25


@lru_cache(maxsize=65536)
def _marks(word: str) -> tuple[frozenset[str], ...]:
    """The diacritics on each letter of ``word`` (đ counts as d with a stroke)."""
    out = []
    for ch in word:
        if ch == "đ":
            out.append(frozenset({"stroke"}))
            continue
        out.append(frozenset(c for c in unicodedata.normalize("NFD", ch)[1:]))
    return tuple(out)


@lru_cache(maxsize=65536)
def dropped_marks(typed: str, word: str) -> bool:
    """True when ``typed`` is ``word`` with some diacritics left out ("ngâp" for "ngập",
    "thong" for "thông"), not a word with other diacritics ("thông" is not "thõng", "đến"
    is not "đèn"). Both have the same diacritic-free shadow."""
    a, b = _marks(typed), _marks(word)
    return len(a) == len(b) and all(x <= y for x, y in zip(a, b, strict=True))


class Matcher:
    """Prepares texts and finds the phrases of an index in them."""

    def __init__(self, normalizer: Normalizer, vocabulary: list[str], fuzzy_cutoff: float,
                 sim: Similarity, common: frozenset[str] = frozenset()) -> None:
        """``vocabulary``: the plain words fuzzy corrections may land on; ``common``: words
        that are never a misspelling of another (see ``[matching]``)."""
        self.common = common
        self.normalizer = normalizer
        self.vocabulary = vocabulary
        self._vocab_set = frozenset(vocabulary)
        self.fuzzy_cutoff = fuzzy_cutoff
        self.sim = sim
        self._correct = lru_cache(maxsize=65536)(self._correct_uncached)

    def _correct_uncached(self, plain: str) -> tuple[str, float] | None:
        found = process.extractOne(
            plain, self.vocabulary, scorer=fuzz.ratio, score_cutoff=self.fuzzy_cutoff
        )
        return (found[0], found[1] / 100.0) if found else None

    def _alternatives(self, token: Token) -> list[tuple[str, float]]:
        alts = [(token.plain, 1.0)]
        plain = token.plain
        if (len(plain) >= 4 and plain not in self._vocab_set and plain.isalpha()
                and not is_syllable(plain)):
            fixed = self._correct(plain)
            if fixed is not None:
                alts.append(fixed)
        return alts

    def prepare(self, text: str) -> Prepared:
        """Normalise ``text``, mark proper names and find fuzzy spellings."""
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
        return Prepared(norm, seq, [self._alternatives(t) for t in seq], names)

    def _token_sim(self, phrase: Phrase, word: str, tok: Token, fz: float, n: int,
                   marked_text: bool, name: bool) -> float:
        if fz < 1.0:
            return 0.0 if phrase.strict or name else fz
        if word == tok.text:
            return 1.0
        if name and (n == 1 or marked_text):
            # "Trần" is a surname, not a misspelt "tràn"; "Le Loi" is not "lỗi". Without
            # diacritics a name of several words may still be a phrase: "Dien luc Bien Hoa"
            # is the power company ("điện lực"), as "Điện lực" is with them.
            return 0.0
        # Same shadow, different diacritics. In SMS-style text the shadow is all we have; in
        # a text with diacritics it is a typo ("ngâp") or a different word ("đến" vs "đèn").
        if not marked_text:
            if not phrase.strict:
                return 1.0
            # Without diacritics a strict single syllable is a coin toss ("co" = có/cô/cỏ,
            # "cap" = cấp/cáp, "quan" = quán/quận/quan): it counts least.
            return self.sim.strict_plain_unigram if n == 1 else self.sim.strict_plain
        if phrase.strict:
            return 0.0
        # A Vietnamese typist who drops a mark leaves the others: a token that carries a
        # mark the keyword lacks is another word, whatever its shadow, and so is one of the
        # commonest words ("dân" in "người dân đến" is not a misspelt "dẫn").
        if tok.text in self.common or not dropped_marks(tok.text, word):
            return 0.0
        return self.sim.mismatch_unigram if n == 1 else self.sim.mismatch_ngram

    def scan(self, prep: Prepared, index: PhraseIndex) -> list[Hit]:
        """All phrase hits: n-grams of shadows (and fuzzy fixes) looked up in ``index``."""
        hits: list[Hit] = []
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
                        hits.append(Hit(phrase, a, b, sim))
        return hits


def select_hits(hits: list[Hit]) -> tuple[list[Hit], list[Hit], set[tuple[int, int]]]:
    """Greedy longest-first non-overlapping hits, negatives, and all accepted spans."""
    negatives = [h for h in hits if h.phrase.weight < 0]
    # A neutral phrase matched only through its shadow does not block anything; on equal
    # length it wins over keywords ("hàng xóm" keeps "nhà hàng" out of "nhà hàng xóm").
    positives = [
        h for h in hits
        if h.phrase.weight > 0 or (h.phrase.sector == "" and h.similarity >= 0.5)
    ]
    # On the same words the spelling that matches best comes first: "tuyến đường" (exact)
    # keeps "tuyên dương" (same shadow, other tones) out; objects before context.
    positives.sort(key=lambda h: (h.first - h.last, h.phrase.sector != "", -h.similarity,
                                  h.phrase.role != "object", -h.phrase.weight * h.similarity))
    owner: dict[int, tuple[int, int, bool]] = {}
    span_sim: dict[tuple[int, int], float] = {}
    chosen: list[Hit] = []
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
        if taken and hit.similarity < span_sim.get((hit.first, hit.last), 0.0):
            continue
        span_sim.setdefault((hit.first, hit.last), hit.similarity)
        for i in span:
            owner[i] = (hit.first, hit.last, neutral)
        if not neutral:
            chosen.append(hit)
    return chosen, negatives, {(a, b) for a, b, _ in owner.values()}
