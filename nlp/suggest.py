"""Keyword suggestions mined from operator corrections, for a human to review.

Each correction is ``(text, classifier_sector, operator_sector)``. Word n-grams (1-3 syllables,
diacritic form) of texts the operator filed under a sector are counted per sector; a phrase is
proposed for a sector when it occurs in at least ``min_count`` of that sector's corrected texts,
mostly in that sector, is not already one of its keywords, and is not just function words or
part of an address. The output is a TOML snippet to paste into ``config/sectors.toml``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence

from nlp.classifier import Classifier
from nlp.normalize import Token
from nlp.place import extract_places

__all__ = ["suggest_keywords", "to_toml_snippet"]

# Vietnamese function words, pronouns, particles and time words: never a keyword on their own
# and never at the edge of a suggested phrase ("bị ngập" -> keep "ngập" inside, drop "bị").
_STOP_TEXT = """bị có không đang rất quá đã rồi này đó kia nhiều mấy ở tại gần trước sau trong
ngoài và với của cho thì là mà nên vì lại cũng vẫn còn hay được lên ra vào đi đến từ hôm nay
ngày giờ nó cái em anh chị tôi mình ạ nhé nha ơi ai gì nào sao chỗ các những một hai ba bốn
năm tháng tuần nữa luôn như thế vậy đây đấy phải người dân xin đề nghị phản ánh vui lòng lúc
khi vừa mới cả dạ alo thôi hết lắm quá trời ạ ủa ừ ờ à hả làm sẽ chưa cần mong muốn biết"""
_STOP = frozenset(_STOP_TEXT.split())
MAX_N = 3
MIN_PURITY = 0.6  # share of a phrase's occurrences that fall in the proposed sector


def _ngrams(tokens: Sequence[Token]) -> set[tuple[str, ...]]:
    """Distinct 1..MAX_N-grams of a text that start and end on a content word."""
    words = [t.text for t in tokens]
    grams: set[tuple[str, ...]] = set()
    for i in range(len(words)):
        for n in range(1, MAX_N + 1):
            gram = tuple(words[i : i + n])
            if len(gram) < n:
                break
            if gram[0] in _STOP or gram[-1] in _STOP:
                continue
            if any(not w.isalpha() for w in gram) or all(len(w) < 2 for w in gram):
                continue
            grams.add(gram)
    return grams


def _content_tokens(classifier: Classifier, text: str) -> list[Token]:
    """Non-filler tokens outside any address ("đường Lê Lợi" is not a keyword)."""
    norm = classifier.normalizer.normalize(text)
    spans = [(p.start, p.end) for p in extract_places(norm)]
    return [
        t for t in norm.tokens
        if not t.filler and not any(s <= t.start and t.end <= e for s, e in spans)
    ]


def suggest_keywords(
    corrections: Iterable[tuple[str, str, str]],
    classifier: Classifier,
    min_count: int = 2,
) -> dict[str, list[tuple[str, int]]]:
    """Propose new phrases per sector (with counts) from (text, classifier, operator) rows."""
    per_sector: dict[str, Counter[tuple[str, ...]]] = defaultdict(Counter)
    total: Counter[tuple[str, ...]] = Counter()
    for text, _predicted, operator_sector in corrections:
        if operator_sector not in classifier.sectors:
            continue
        grams = _ngrams(_content_tokens(classifier, text))
        per_sector[operator_sector].update(grams)
        total.update(grams)
    known: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    for phrases in classifier.keywords.by_plain.values():
        for ph in phrases:
            known[ph.sector].add(ph.tokens)
    out: dict[str, list[tuple[str, int]]] = {}
    for sector in classifier.sectors:
        counts = per_sector.get(sector)
        if not counts:
            continue
        cands = {
            g: c for g, c in counts.items()
            if c >= min_count and c / total[g] >= MIN_PURITY and g not in known[sector]
        }
        # Drop a phrase that only ever occurs inside a longer candidate with the same count.
        kept = [
            g for g, c in cands.items()
            if not any(
                len(h) > len(g) and cands[h] == c and _contains(h, g) for h in cands
            )
        ]
        kept.sort(key=lambda g: (-cands[g], -len(g), g))
        if kept:
            out[sector] = [(" ".join(g), cands[g]) for g in kept]
    return out


def _contains(longer: tuple[str, ...], shorter: tuple[str, ...]) -> bool:
    n = len(shorter)
    return any(longer[i : i + n] == shorter for i in range(len(longer) - n + 1))


def to_toml_snippet(suggestions: Mapping[str, Sequence[tuple[str, int]]]) -> str:
    """Render suggestions as TOML to review and merge into ``config/sectors.toml``."""
    lines = [
        "# Keyword suggestions mined from operator corrections.",
        "# Review each phrase, then move the good ones into the sector's lists in sectors.toml.",
    ]
    for sector, phrases in suggestions.items():
        if not phrases:
            continue
        lines += ["", f"[sectors.{sector}]", "suggested = ["]
        for phrase, count in phrases:
            escaped = phrase.replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'  "{escaped}",  # {count} corrections')
        lines.append("]")
    return "\n".join(lines) + "\n"
