"""Phrase lists matched on normalised Vietnamese text, diacritic-aware.

A phrase matches on the diacritic-free shadow of the text after teencode expansion
(`nlp.normalize`), so "cuu vs" finds "cứu với". A phrase written with a trailing "!" is
strict: it matches only a token spelt with exactly its diacritics, because its shadow is an
ordinary word ("đĩ" -> "di" = "đi", "cút" -> "cut" = "cụt", "đè người" vs "để người").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from nlp.normalize import Normalized, Normalizer, Token


@dataclass(frozen=True, slots=True)
class Phrase:
    """One configured phrase: its words with diacritics and their shadows."""

    text: str
    words: tuple[str, ...]
    plains: tuple[str, ...]
    strict: bool


@dataclass(frozen=True, slots=True)
class Hit:
    """A phrase found at tokens [first, last] of a token sequence."""

    phrase: Phrase
    first: int
    last: int
    tag: str = ""


def content_tokens(norm: Normalized) -> list[Token]:
    """The tokens phrases are matched on: words and numbers, spoken fillers kept."""
    return [t for t in norm.tokens if t.text.strip() and (t.text[0].isalnum() or t.text in "👍")]


class PhraseSet:
    """Phrases indexed by their first shadow word; `find` returns every hit."""

    def __init__(self, normalizer: Normalizer) -> None:
        self.normalizer = normalizer
        self.by_first: dict[str, list[tuple[Phrase, str]]] = {}

    def add(self, texts: Iterable[str], tag: str = "") -> PhraseSet:
        """Index `texts` under `tag` (the intent, hazard or topic they stand for)."""
        for raw in texts:
            strict = raw.endswith("!") and len(raw) > 1
            body = raw[:-1] if strict else raw
            toks = content_tokens(self.normalizer.normalize(body))
            if not toks:
                continue
            phrase = Phrase(raw, tuple(t.text for t in toks), tuple(t.plain for t in toks),
                            strict)
            self.by_first.setdefault(phrase.plains[0], []).append((phrase, tag))
        for entries in self.by_first.values():
            entries.sort(key=lambda e: -len(e[0].words))  # longest first
        return self

    def find(self, toks: Sequence[Token]) -> list[Hit]:
        """All hits in `toks`, longest first at each position."""
        hits: list[Hit] = []
        for i, tok in enumerate(toks):
            for phrase, tag in self.by_first.get(tok.plain, ()):
                if self._matches(phrase, toks, i):
                    hits.append(Hit(phrase, i, i + len(phrase.words) - 1, tag))
        return hits

    def longest_at(self, toks: Sequence[Token], i: int) -> Hit | None:
        """The longest phrase starting at token `i`, if any."""
        for phrase, tag in self.by_first.get(toks[i].plain, ()):
            if self._matches(phrase, toks, i):
                return Hit(phrase, i, i + len(phrase.words) - 1, tag)
        return None

    def all_at(self, toks: Sequence[Token], i: int) -> list[Hit]:
        """Every phrase starting at token `i`."""
        return [Hit(p, i, i + len(p.words) - 1, tag) for p, tag in self.by_first.get(
            toks[i].plain, ()) if self._matches(p, toks, i)]

    @staticmethod
    def _matches(phrase: Phrase, toks: Sequence[Token], i: int) -> bool:
        if i + len(phrase.words) > len(toks):
            return False
        for j, (word, plain) in enumerate(zip(phrase.words, phrase.plains, strict=True)):
            tok = toks[i + j]
            if tok.plain != plain:
                return False
            # A word typed with diacritics must have the phrase's diacritics ("chạy xe" is not
            # "cháy xe", "cử người" not "cứu người"); a word typed without them (SMS style)
            # matches by its shadow, unless the phrase is strict.
            if tok.text != word and (phrase.strict or tok.marked):
                return False
        return True


def covered(toks: Sequence[Token], sets: Sequence[PhraseSet]) -> tuple[bool, set[str]]:
    """Whether the tokens are exactly a sequence of phrases of `sets` (and their tags).

    A small dynamic programme over token positions, so "xin chào buổi sáng" is "xin" +
    "chào buổi sáng" even though "xin chào" is a phrase too; tagged phrases are preferred.
    """
    n = len(toks)
    best: list[set[str] | None] = [None] * (n + 1)
    best[0] = set()
    for i in range(n):
        here = best[i]
        if here is None:
            continue
        for s in sets:
            for hit in s.all_at(toks, i):
                tags = here | ({hit.tag} if hit.tag else set())
                nxt = best[hit.last + 1]
                if nxt is None or len(tags) > len(nxt):
                    best[hit.last + 1] = tags
    end = best[n]
    return (end is not None), (end or set())
