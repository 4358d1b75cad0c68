"""Tests for nlp.place: address extraction from Vietnamese reports."""

from __future__ import annotations

import pytest

from nlp.place import extract_address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Số 12/3 đường Nguyễn Trãi, P.Tân Định, Q.1 có quán lấn chiếm vỉa hè",
         "số 12/3, đường Nguyễn Trãi, phường Tân Định, quận 1"),
        ("duong Le Loi ngap sau qua, xe chet may", "duong Le Loi"),
        ("rác ở hẻm 45 Trần Phú chưa thu gom", "hẻm 45 Trần Phú"),
        ("Cống ở kiệt 12 Hoàng Diệu bị tắc", "kiệt 12 Hoàng Diệu"),
        ("ngõ 8 phố Hàng Bông mất điện", "ngõ 8, phố Hàng Bông"),
        ("Trước cổng chợ Đông Ba có người bán hàng rong", "chợ Đông Ba"),
        ("Thôn Đông, xã Tam Hợp, huyện Bình Xuyên mất nước",
         "thôn Đông, xã Tam Hợp, huyện Bình Xuyên"),
        ("nhà số 27 tổ 5 bị nứt", "số 27, tổ 5"),
        ("ở q1 p12 đèn đường tắt", "quận 1, phường 12"),
        ("ở đường nguyễn văn linh đèn không sáng", "đường nguyễn văn linh"),  # "văn" ≠ "vẫn"
        ("duong le loi bi ngap", "duong le loi"),
    ],
)
def test_extract_address(text: str, expected: str) -> None:
    assert extract_address(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "đèn đường không sáng mấy hôm nay",
        "đường bị ngập sâu quá",
        "cảm ơn ad",
        "",
    ],
)
def test_no_address(text: str) -> None:
    assert extract_address(text) is None
