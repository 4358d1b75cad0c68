"""Vietnamese text normalisation for the sector classifier (DESIGN.md §5).

Pipeline per token: Unicode NFC (also repairs NFD input from some phones), lower case,
repeated-letter squashing ("quáaaa" -> "quá"), teencode / abbreviation expansion from
``config/normalize.toml`` ("ko" -> "không", "p." -> "phường", "q1" -> "quận 1"), and a
diacritic-free shadow form ("đường" -> "duong"). Every output token keeps the character span
of the original text it came from, so matches can be highlighted for an operator.
:class:`PhraseIndex` holds keyword phrases in the same normalised form, keyed by their shadow.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from itertools import groupby
from pathlib import Path
from typing import NamedTuple

__all__ = [
    "Normalized",
    "Normalizer",
    "Phrase",
    "PhraseIndex",
    "Token",
    "collapse",
    "fold",
    "has_diacritics",
    "is_syllable",
    "normalize",
    "strip_diacritics",
]

# Tokens: house numbers such as "12/3", "45a" or "7-9" stay whole; otherwise runs of word
# characters *plus combining marks* (U+0300..U+036F), because NFD input keeps the tone marks
# as separate code points that Python's \w does not match.
_TOKEN_RE = re.compile(r"\d+[a-zA-Z]?(?:[/\-]\d+[a-zA-Z]?)+|[^\W_][\w\u0300-\u036f]*", re.UNICODE)
_NUMBERED_RE = re.compile(r"^([a-zđ]{1,2})(\d+[a-z]?)$")
_SPACE_RE = re.compile(r"\s+")
_PUNCT_RE = re.compile(r"[^\w\s/]+", re.UNICODE)

# "đ" is a separate letter, not a "d" with a combining mark, so NFD does not strip it.
_PLAIN_EXTRA = str.maketrans({"đ": "d", "Đ": "D"})


def strip_diacritics(text: str) -> str:
    """Return ``text`` without Vietnamese diacritics (``đường`` -> ``duong``)."""
    decomposed = unicodedata.normalize("NFD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return unicodedata.normalize("NFC", stripped.translate(_PLAIN_EXTRA))


def has_diacritics(text: str) -> bool:
    """True when ``text`` carries at least one Vietnamese diacritic or the letter đ."""
    return strip_diacritics(text) != text


# Cached per raw token: ((word, shadow, is_filler), ...), marked, NFC surface, is_alpha.
_Word = tuple[tuple[tuple[str, str, bool], ...], bool, str, bool]


class Token(NamedTuple):  # a NamedTuple: built ~30 times per message, much cheaper than a dataclass
    """One normalised token; ``start``/``end`` index the original text."""

    text: str  # NFC, lower case, expanded (may be one word of a multi-word expansion)
    plain: str  # diacritic-free shadow of ``text``
    start: int
    end: int
    surface: str  # the original characters (NFC), case kept, for place extraction
    marked: bool  # the original token carried diacritics
    filler: bool = False  # spoken filler ("dạ", "thì", "cái") skipped by phrase matching


@dataclass(frozen=True, slots=True)
class Normalized:
    """A normalised text: tokens with spans plus joined normal and shadow forms."""

    original: str
    tokens: tuple[Token, ...]
    has_diacritics: bool  # most letter tokens carry diacritics (not SMS style)

    @property
    def text(self) -> str:
        """Normalised text with diacritics, tokens joined by single spaces."""
        return " ".join(t.text for t in self.tokens)

    @property
    def plain(self) -> str:
        """Diacritic-free shadow form of :attr:`text`."""
        return " ".join(t.plain for t in self.tokens)


# The five tone marks (huyền, sắc, hỏi, ngã, nặng). Vowel-quality marks (â, ă, ê, ô, ơ, ư)
# make different letters: "ưu" in "cứu", "lưu" is not a repeated "u".
_TONES = frozenset("\u0300\u0301\u0309\u0303\u0323")


@lru_cache(maxsize=4096)
def _letter(ch: str) -> str:
    """The letter without its tone mark ("ứ" -> "ư", "á" -> "a")."""
    base = "".join(c for c in unicodedata.normalize("NFD", ch) if c not in _TONES)
    return unicodedata.normalize("NFC", base)


def _squash(token: str, keep_double: frozenset[str]) -> str:
    """Collapse runs of one letter ("ngậppp" -> "ngập", "quáaa" -> "quá")."""
    out: list[str] = []
    for _, group in groupby(token, key=lambda ch: _letter(ch) if ch.isalpha() else ch):
        run = list(group)
        if len(run) == 1 or not run[0].isalpha():
            out.extend(run)
        elif len(run) == 2 and _letter(run[0]) in keep_double:
            out.extend(run)  # "xoong", "boong"
        else:
            # Keep the toned variant: "quáa" and "quaá" both give "quá".
            out.append(next((ch for ch in run if _letter(ch) != ch), run[0]))
    return "".join(out)


class Normalizer:
    """Table-driven normaliser; build it with :meth:`load` or from mappings."""

    def __init__(
        self,
        teencode: Mapping[str, str],
        dotted: Mapping[str, str],
        numbered: Mapping[str, str],
        keep_double: frozenset[str] = frozenset({"o"}),
        fillers: frozenset[str] = frozenset(),
        unless_next: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        """Create a normaliser from replacement tables (keys are lower case); a teencode key
        in ``unless_next`` stays as written before one of its words ("lun sut": lún sụt)."""
        nfc = unicodedata.normalize
        self.teencode = {nfc("NFC", k): nfc("NFC", v) for k, v in teencode.items()}
        self.dotted = {nfc("NFC", k): nfc("NFC", v) for k, v in dotted.items()}
        self.numbered = {nfc("NFC", k): nfc("NFC", v) for k, v in numbered.items()}
        self.keep_double = keep_double
        self.fillers = frozenset(nfc("NFC", w) for w in fillers)
        self.unless_next = {nfc("NFC", k): frozenset(nfc("NFC", w) for w in v)
                            for k, v in (unless_next or {}).items()}
        self._word = lru_cache(maxsize=65536)(self._word_uncached)

    @classmethod
    def load(cls, path: Path | None = None) -> Normalizer:
        """Load the tables from ``normalize.toml`` (the packaged one by default)."""
        if path is None:
            data = tomllib.loads(files("config").joinpath("normalize.toml").read_text("utf-8"))
        else:
            data = tomllib.loads(Path(path).read_text("utf-8"))
        options = data.get("options", {})
        return cls(
            data.get("teencode", {}),
            data.get("dotted", {}),
            data.get("numbered", {}),
            frozenset(options.get("keep_double", ["o"])),
            frozenset(options.get("fillers", [])),
            data.get("teencode_unless_next", {}),
        )

    def _word_uncached(self, raw: str, dotted: bool, literal: bool = False) -> _Word:
        """Normalise one raw token: its words (with shadows and filler flags), mark, surface
        (``literal``: no teencode expansion)."""
        surface = unicodedata.normalize("NFC", raw)
        marked = has_diacritics(surface)
        word = surface.lower()
        if not word.isdigit():
            word = _squash(word, self.keep_double)
        m = _NUMBERED_RE.match(word)
        if dotted and word in self.dotted:
            words = tuple(self.dotted[word].split())
        elif word in self.teencode and not literal:
            words = tuple(self.teencode[word].split())
        elif m and m.group(1) in self.numbered:
            words = (*self.numbered[m.group(1)].split(), m.group(2))
        else:
            words = (word,)
        parts = tuple((w, strip_diacritics(w), w in self.fillers) for w in words)
        return parts, marked, surface, surface.isalpha()

    def normalize(self, text: str) -> Normalized:
        """Normalise ``text`` into tokens with spans in the original string."""
        tokens: list[Token] = []
        marked_count = 0
        letter_count = 0
        size = len(text)
        found = list(_TOKEN_RE.finditer(text))
        for n, m in enumerate(found):
            start, end = m.span()
            dotted = end < size and text[end] == "."
            raw = m.group()
            literal = False
            if self.unless_next and (after := self.unless_next.get(raw.lower())):
                literal = n + 1 < len(found) and found[n + 1].group().lower() in after
            parts, marked, surface, alpha = self._word(raw, dotted, literal)
            if alpha:
                letter_count += 1
                marked_count += marked
            for w, plain, filler in parts:
                tokens.append(Token(w, plain, start, end, surface, marked, filler))
        # A text counts as "with diacritics" when at least a third of its words carry
        # them; Vietnamese prose marks well over half of its syllables, SMS text none.
        with_marks = letter_count > 0 and marked_count * 3 >= letter_count
        return Normalized(text, tuple(tokens), with_marks)


@lru_cache(maxsize=1)
def _default() -> Normalizer:
    return Normalizer.load()


def normalize(text: str) -> Normalized:
    """Normalise ``text`` with the packaged tables."""
    return _default().normalize(text)


def fold(text: str) -> str:
    """Return the normalised form of ``text`` as one string (NFC, lower, expanded)."""
    return normalize(text).text


def collapse(text: str) -> str:
    """NFC, lower case, punctuation folded to spaces, whitespace collapsed (no expansion)."""
    text = unicodedata.normalize("NFC", text).lower()
    return _SPACE_RE.sub(" ", _PUNCT_RE.sub(" ", text)).strip()


# Plain (diacritic-free) Vietnamese syllable: onset, 1-3 vowels, optional coda. Spelling
# rules: "ngh"/"gh"/"k" only before e/i (k also before y), "c"/"ng"/"g" never before them.
# Tokens that fail this are typos or foreign words and are candidates for fuzzy correction.
_SYLLABLE_RE = re.compile(
    r"^(((ngh|gh)(?=[ie])|k(?=[iey])|(c|ng|g)(?![ie])|nh|ch|gi|kh|ph|qu|th|tr|[bdhlmnprstvx])?"
    r"[aeiouy]{1,3}(ch|ng|nh|[cmnpt])?|gi(ch|ng|nh|[cmnpt])?)$"  # "gì", "gìn": gi + no vowel
)


def is_syllable(plain: str) -> bool:
    """True when a diacritic-free token is spelt like a Vietnamese syllable."""
    return bool(_SYLLABLE_RE.match(plain))


@dataclass(frozen=True, slots=True)
class Phrase:
    """A keyword phrase in normalised form; ``sector`` tags who owns it."""

    sector: str  # owner tag: a sector code, or a pseudo tag of the classifier ("" = neutral)
    text: str
    tokens: tuple[str, ...]
    plain: tuple[str, ...]
    weight: float
    strict: bool
    role: str = "object"  # "object" (what is reported) or "context" (the setting around it)


class PhraseIndex:
    """Phrases keyed by their diacritic-free token tuple, with a prefix set for pruning."""

    def __init__(self, normalizer: Normalizer, common: Iterable[str] = ()) -> None:
        """Create an empty index that normalises phrases with ``normalizer``; ``common``
        words make any other one-syllable phrase with their shadow strict."""
        self.normalizer = normalizer
        self.common = frozenset(unicodedata.normalize("NFC", w).lower() for w in common)
        self.common_plain = frozenset(strip_diacritics(w) for w in self.common)
        self.by_plain: dict[tuple[str, ...], list[Phrase]] = {}
        self.prefixes: set[tuple[str, ...]] = set()
        self.max_len = 1

    def add(self, sector: str, text: str, weight: float, role: str = "object") -> None:
        """Index ``text`` (a trailing "!" marks it strict) for ``sector`` with ``weight``."""
        strict = text.endswith("!")
        text = text.rstrip("!").strip()
        tokens = tuple(t for t in self.normalizer.normalize(text).tokens if not t.filler)
        if not tokens:
            return
        words = tuple(t.text for t in tokens)
        plain = tuple(t.plain for t in tokens)
        # Without diacritics "toi" is far more often "tôi" (I) than "tối" (dark), "la" "là"
        # than "lá", "cho" "cho" than "chợ": a one-syllable keyword whose shadow is also a
        # common word needs its own diacritics.
        if len(words) == 1 and plain[0] in self.common_plain and words[0] not in self.common:
            strict = True
        entries = self.by_plain.setdefault(plain, [])
        for i, old in enumerate(entries):  # one entry per (sector, words): keep the max weight
            if old.sector == sector and old.tokens == words:
                if abs(weight) > abs(old.weight) or (role == "object" != old.role):
                    entries[i] = Phrase(sector, text, words, plain, weight, strict, role)
                return
        entries.append(Phrase(sector, text, words, plain, weight, strict, role))
        self.prefixes.update(plain[:n] for n in range(1, len(plain) + 1))
        self.max_len = max(self.max_len, len(plain))
