"""Tests for nlp.suggest: keyword mining from operator corrections."""

from __future__ import annotations

import tomllib

import pytest

from nlp.classifier import Classifier
from nlp.suggest import suggest_keywords, to_toml_snippet


@pytest.fixture(scope="module")
def clf() -> Classifier:
    return Classifier.load()


CORRECTIONS = [
    ("Trụ cứu thương bị xe tông gãy ở đường Lê Lợi", "an_toan_giao_thong", "cap_nuoc"),
    ("trụ cứu thương rỉ nước cả tuần", "khac", "cap_nuoc"),
    ("Cái trụ cứu thương trước chợ bị nghiêng", "dien", "cap_nuoc"),
    ("hố tử thần giữa đường sâu hoắm", "ha_tang_do_thi", "ha_tang_giao_thong"),
    ("lại xuất hiện hố tử thần trên quốc lộ", "khac", "ha_tang_giao_thong"),
    ("cảm ơn", "khac", "khac"),
]


def test_suggestions_with_counts(clf: Classifier) -> None:
    out = suggest_keywords(CORRECTIONS, clf, min_count=2)
    assert ("trụ cứu thương", 3) in out["cap_nuoc"]
    assert ("hố tử thần", 2) in out["ha_tang_giao_thong"]
    # Sub-phrases with the same count are folded into the longer phrase.
    assert all(p != "cứu thương" for p, _ in out["cap_nuoc"])
    # Function words and address parts are never proposed.
    flat = [p for phrases in out.values() for p, _ in phrases]
    assert "bị" not in flat and not any("lê lợi" in p for p in flat)


def test_existing_keywords_not_proposed(clf: Classifier) -> None:
    rows = [("mất nước cả ngày", "khac", "cap_nuoc")] * 3
    out = suggest_keywords(rows, clf)
    assert "mất nước" not in [p for p, _ in out.get("cap_nuoc", [])]


def test_min_count(clf: Classifier) -> None:
    assert "ha_tang_giao_thong" not in suggest_keywords(CORRECTIONS, clf, min_count=3)


def test_toml_snippet_parses(clf: Classifier) -> None:
    snippet = to_toml_snippet(suggest_keywords(CORRECTIONS, clf))
    data = tomllib.loads(snippet)
    assert "trụ cứu thương" in data["sectors"]["cap_nuoc"]["suggested"]
    assert "# 3 corrections" in snippet
