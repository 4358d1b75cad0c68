"""Tests for nlp.normalize: NFC, teencode, abbreviations, squashing, shadow form, spans."""

from __future__ import annotations

import unicodedata

import pytest

from nlp.normalize import (
    Normalizer,
    collapse,
    fold,
    has_diacritics,
    is_syllable,
    normalize,
    strip_diacritics,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("đèn đg ko sáng mấy hôm nay r", "đèn đường không sáng mấy hôm nay rồi"),
        ("ngập quáaaa", "ngập quá"),
        ("NGẬP   SÂU!!!", "ngập sâu"),
        ("dc k? đc hok", "được không được không"),
        ("j z", "gì vậy"),
        ("ng ta đổ rác", "người ta đổ rác"),
        ("P.Tân Định, Q.1, tp.HCM", "phường tân định quận 1 thành phố hcm"),
        ("q1 p12", "quận 1 phường 12"),
        ("mất nc từ hôm qua", "mất nước từ hôm qua"),
        ("xoong nồi", "xoong nồi"),  # "oo" is a real Vietnamese rhyme
        ("quaá điii", "quá đi"),
    ],
)
def test_fold(raw: str, expected: str) -> None:
    assert fold(raw) == expected


def test_nfd_input_is_composed_and_spans_index_the_original() -> None:
    raw = unicodedata.normalize("NFD", "Đường ngập")
    norm = normalize(raw)
    assert norm.text == "đường ngập"
    first = norm.tokens[0]
    assert raw[first.start : first.end] == unicodedata.normalize("NFD", "Đường")


def test_shadow_form() -> None:
    assert strip_diacritics("Đường Lê Lợi ngập") == "Duong Le Loi ngap"
    assert normalize("đèn đường").plain == "den duong"
    assert has_diacritics("đ") and not has_diacritics("duong")


def test_expansion_keeps_span_of_the_abbreviation() -> None:
    text = "ở tp Vĩnh Yên"
    norm = normalize(text)
    words = [(t.text, text[t.start : t.end]) for t in norm.tokens]
    assert ("thành", "tp") in words and ("phố", "tp") in words


def test_dotted_only_applies_before_a_full_stop() -> None:
    assert fold("p.5") == "phường 5"
    assert fold("x. Tam Hợp") == "xã tam hợp"
    assert fold("x") == "x"


def test_register_detection() -> None:
    assert normalize("Đèn đường không sáng").has_diacritics
    assert not normalize("den duong khong sang").has_diacritics


def test_fillers_are_marked() -> None:
    norm = normalize("alo dạ cái cống thì bị nghẹt")
    assert [t.text for t in norm.tokens if not t.filler] == ["cống", "bị", "nghẹt"]


def test_custom_tables() -> None:
    n = Normalizer({"vl": "vãi"}, {}, {})
    assert n.normalize("đẹp vl").text == "đẹp vãi"


def test_empty() -> None:
    assert normalize("").tokens == ()
    assert normalize("  ...!!  ").tokens == ()


def test_collapse_folds_punctuation_and_space() -> None:
    assert collapse("  Đèn   ĐƯỜNG!!! hư,  rồi... ") == "đèn đường hư rồi"


@pytest.mark.parametrize(
    ("plain", "ok"),
    [("duong", True), ("nghieng", True), ("gi", True), ("khuya", True),
     ("duog", False), ("nghap", False), ("ka", False), ("wifi", False)],
)
def test_is_syllable(plain: str, ok: bool) -> None:
    assert is_syllable(plain) is ok


def test_squash_keeps_distinct_vowels() -> None:
    # "ư" + "u" in "cứu", "lưu" are two letters, not a repeated "u".
    assert fold("cứu lưu hưu") == "cứu lưu hưu"
