"""Extract the place a Vietnamese report mentions into one address string.

Works on the normalised tokens (so "p.Tân Định" and "q1" already read "phường Tân Định",
"quận 1") and copies names from the original spelling. Recognises house numbers (số nhà,
"12/3"), streets (đường, phố, quốc lộ), alleys (hẻm in the South, kiệt in Huế/Đà Nẵng,
ngõ/ngách in the North), residential units (tổ, khu phố, thôn, xóm, ấp), administrative
units (phường/xã/thị trấn, quận/huyện/thị xã, thành phố, tỉnh) and common landmarks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nlp.normalize import Normalized, Token, normalize, strip_diacritics

__all__ = ["Place", "extract_address", "extract_places"]


@dataclass(frozen=True, slots=True)
class Place:
    """One place part; ``start``/``end`` and ``name_start`` index the original text."""

    text: str  # e.g. "đường Lê Lợi"
    kind: str  # "num" | "name" | "landmark" | "house"
    start: int
    end: int
    name_start: int
    confident: bool = True  # the name is capitalised or a number, not a lower-case guess

# Marker -> kind. "num" needs a number after it, "name" a name (capitalised, or in
# all-lower-case text up to two syllables that are not common words), "landmark" a
# capitalised name only ("chợ" alone is usually "họp chợ", not a place).
_MARKERS: dict[tuple[str, ...], str] = {
    ("số", "nhà"): "num", ("số",): "num", ("hẻm",): "num", ("kiệt",): "num", ("ngõ",): "num",
    ("ngách",): "num", ("tổ",): "num", ("lô",): "num", ("kiốt",): "num",
    ("đường",): "name", ("phố",): "name", ("quốc", "lộ"): "num", ("tỉnh", "lộ"): "num",
    ("tổ", "dân", "phố"): "name", ("khu", "phố"): "name", ("thôn",): "name", ("xóm",): "name",
    ("ấp",): "name", ("khu", "dân", "cư"): "name", ("khu", "đô", "thị"): "name",
    ("phường",): "name", ("xã",): "name", ("thị", "trấn"): "name", ("quận",): "name",
    ("huyện",): "name", ("thị", "xã"): "name", ("thành", "phố"): "name", ("tỉnh",): "name",
    ("chợ",): "landmark", ("cầu",): "landmark", ("công", "viên"): "landmark",
    ("bệnh", "viện"): "landmark", ("trường",): "landmark", ("ngã", "tư"): "landmark",
    ("ngã", "ba"): "landmark", ("chung", "cư"): "landmark", ("bến", "xe"): "landmark",
    ("nhà", "văn", "hóa"): "landmark", ("chùa",): "landmark", ("nhà", "thờ"): "landmark",
    ("khu", "công", "nghiệp"): "landmark", ("siêu", "thị"): "landmark",
}
# Markers are looked up on the diacritic-free shadow so SMS text ("duong", "phuong") works.
_PLAIN_MARKERS = {tuple(strip_diacritics(w) for w in k): v for k, v in _MARKERS.items()}
_MAX_MARKER = max(len(k) for k in _MARKERS)
_FIRST_WORDS = {k[0] for k in _PLAIN_MARKERS}
# Words before "đường" that make it part of a noun ("đèn đường" = street light).
_NOT_STREET_TEXT = "đèn mặt lòng lề bên ven làm sửa ra xuống qua băng giữa góc cung dưới tắc kẹt"
_NOT_STREET_AFTER = {strip_diacritics(w) for w in [*_NOT_STREET_TEXT.split(), "trên"]}
# Common words that end a lower-case name ("duong le loi ngap sau" -> "le loi").
_STOP_TEXT = """bị có không đang rất quá đã rồi ngập hư hỏng sáng tối này đó kia nhiều mấy ở tại gần
    trước sau trong ngoài và với của cho thì là mà nên vì lại cũng vẫn còn hay được bể nứt lún
    xuống lên ra vào đi đến từ hôm nay đêm ngày giờ người xe nhà dân mọi nó cái em anh chị tôi
    mình ạ nhé nha ơi ai gì nào sao chỗ khu đoạn đầu cuối giữa bên cạnh đối diện thuộc kéo dài
    liên tục suốt hết chưa cần mong đề nghị phản ánh xin vui lòng lúc khi vừa mới cả các những
    một hai ba bốn năm sáu bảy tám chín mười tháng tuần nữa luôn hoài như thế vậy đây đấy
    có thể phải bao giờ bây"""
_STOP_WORDS = frozenset(_STOP_TEXT.split())
_STOP_PLAIN = frozenset(strip_diacritics(w) for w in _STOP_WORDS)
_NUM_RE = re.compile(r"^\d+[a-z]?(?:[/\-]\d+[a-z]?)*$")


def _is_num(tok: Token) -> bool:
    return bool(_NUM_RE.match(tok.text))


def _capitalised(tok: Token) -> bool:
    return tok.surface[:1].isupper()


def _word(tok: Token, marker_start: int) -> str:
    # An expanded abbreviation ("q1" -> "quận 1") shares the marker's span: use the expansion.
    return tok.text if tok.start == marker_start else tok.surface


def _separated(text: str, left: Token, right: Token) -> bool:
    """True when punctuation (a comma, a full stop...) separates two tokens."""
    gap = text[left.end : right.start]
    return any(ch in gap for ch in ",;:()\n!?") or (". " in gap and right.surface[:1].isupper())


def lowercase_style(norm: Normalized) -> bool:
    """True when nothing after the first token is capitalised (chat, SMS, transcripts)."""
    return not any(_capitalised(t) for t in norm.tokens[1:])


def _name(norm: Normalized, toks: tuple[Token, ...], i: int, kind: str, lower: bool) -> int:
    """Number of name tokens starting at ``i`` after a marker of ``kind``."""
    n = 0
    lowercase_ok = kind == "name" and lower
    while i + n < len(toks) and n < 5:
        tok = toks[i + n]
        if n and _separated(norm.original, toks[i + n - 1], tok):
            break
        if kind == "num" and n == 0:
            if not (_is_num(tok) or (tok.text.isalnum() and any(c.isdigit() for c in tok.text))):
                return 0
            n += 1
            continue
        if _is_num(tok) and n == 0:
            n += 1
            if kind == "name":  # "phường 12", "quận 1": a numbered unit has no other name
                break
            continue
        if _capitalised(tok) and not tok.filler:
            n += 1
            continue
        # In text with diacritics compare the real word: "văn" (Nguyễn Văn Linh) is not
        # the stop word "vẫn", though both are "van" without diacritics.
        stop = tok.text in _STOP_WORDS if norm.has_diacritics else tok.plain in _STOP_PLAIN
        if lowercase_ok and not stop and not tok.filler and n < 3:
            if (tok.plain,) in _PLAIN_MARKERS:
                break
            n += 1
            continue
        break
    return n


def extract_places(norm: Normalized) -> list[Place]:
    """All place parts found in a normalised text, in order of appearance."""
    toks = norm.tokens
    lower = lowercase_style(norm)
    parts: list[Place] = []
    i = 0
    while i < len(toks):
        found = None
        if toks[i].plain not in _FIRST_WORDS and not toks[i].text[:1].isdigit():
            i += 1
            continue
        for size in range(_MAX_MARKER, 0, -1):
            window = toks[i : i + size]
            key = tuple(t.plain for t in window)
            # In a text with diacritics, "đương" is not "đường": require the exact marker.
            if len(key) == size and key in _PLAIN_MARKERS and (
                not norm.has_diacritics or tuple(t.text for t in window) in _MARKERS
            ):
                found = (size, _PLAIN_MARKERS[key])
                break
        if found is None:
            # "123 Lê Lợi": a house number directly followed by a capitalised street name.
            if _is_num(toks[i]) and i + 1 < len(toks) and _capitalised(toks[i + 1]):
                n = _name(norm, toks, i + 1, "landmark", lower)
                if n:
                    text = " ".join(t.surface for t in toks[i : i + 1 + n])
                    parts.append(Place(text, "house", toks[i].start, toks[i + n].end,
                                       toks[i].start))
                    i += 1 + n
                    continue
            i += 1
            continue
        size, kind = found
        marker = toks[i : i + size]
        j = i + size
        if j < len(toks) and _separated(norm.original, marker[-1], toks[j]):
            i = j
            continue
        after_noun = i > 0 and toks[i - 1].plain in _NOT_STREET_AFTER
        eff_kind = "landmark" if kind == "name" and after_noun else kind
        n = _name(norm, toks, j, eff_kind, lower) if j < len(toks) else 0
        if n:
            words = [t.text for t in marker]
            for t in toks[j : j + n]:
                w = _word(t, marker[0].start)
                if not words or w != words[-1]:
                    words.append(w)
            name_start = toks[j].start if toks[j].start != marker[0].start else toks[j].end
            sure = all(_is_num(t) or _capitalised(t) for t in toks[j : j + n])
            parts.append(Place(" ".join(words), kind, marker[0].start, toks[j + n - 1].end,
                               name_start, sure))
            i = j + n
        else:
            i = j
    unique: dict[str, Place] = {}
    for p in parts:
        unique.setdefault(p.text, p)
    return list(unique.values())


def extract_address(norm: Normalized | str) -> str | None:
    """The mentioned place as one comma-separated address string, or None."""
    if isinstance(norm, str):
        norm = normalize(norm)
    parts = extract_places(norm)
    return ", ".join(p.text for p in parts) if parts else None
