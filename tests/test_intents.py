"""The intent step: a table of utterances in five registers, moderation that never insults
ordinary people, emergencies and their numbers, corrections, language, and duty alerts in
the store (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from gateway.domain.intents import Intents
from store.db import create_engine, session_factory
from store.models import Citizen, Report, ReportStatus
from store.repos import alerts as alerts_repo

DATA = Path(__file__).parent / "data"
MERGE = {"deny": "correction", "ack": "thanks"}  # the names for the finer intents


@pytest.fixture(scope="module")
def intents() -> Intents:
    return Intents.load()


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text("utf-8").splitlines()]


def test_the_table_covers_every_intent_in_every_register() -> None:
    rows = _rows("utterances.jsonl")
    assert len(rows) >= 300
    cells = Counter((r["intent"], r["register"]) for r in rows)
    intents = {r["intent"] for r in rows}
    registers = {"formal", "sms", "teencode", "central", "english"}
    assert {r["register"] for r in rows} == registers
    assert all(cells[(i, g)] >= 5 for i in intents for g in registers)
    assert len(intents) == 10


@pytest.mark.parametrize("row", _rows("utterances.jsonl"), ids=lambda r: r["text"][:40])
def test_utterance(intents: Intents, row: dict) -> None:
    got = intents.detect(row["text"], row["state"])
    assert MERGE.get(got.name, got.name) == row["intent"]


def test_held_out_utterances_stay_accurate(intents: Intents) -> None:
    rows = _rows("utterances_heldout.jsonl")
    right = sum(MERGE.get(intents.detect(r["text"], r["state"]).name, "?") == r["intent"]
                or intents.detect(r["text"], r["state"]).name == r["intent"] for r in rows)
    assert right / len(rows) >= 0.9  # measured 0.95 (bench/dialog.py); never tuned on


@pytest.mark.parametrize("text", [
    "Đường cụt ở kiệt 4 đầy rác",        # cụt → cut = cút
    "người đi bộ phải đeo khẩu trang",    # đeo → deo = đéo, đi → di = đĩ
    "duong cut o kiet 4, nguoi di bo phai deo khau trang",  # without diacritics
    "Con chó nhà bên sủa suốt đêm",       # a dog is not an insult
    "chung cư cc Hoàng Anh mất nước",
    "vật liệu xây dựng (vl) đổ tràn vỉa hè",
])
def test_ordinary_words_are_not_abuse(intents: Intents, text: str) -> None:
    assert not intents.detect(text).abusive


@pytest.mark.parametrize("text", ["đm rác không ai dọn", "vcl bốc mùi", "Đéo ai xử lý à",
                                  "mấy thằng chó đổ rác", "dmm cong tac"])
def test_real_abuse_is_found(intents: Intents, text: str) -> None:
    assert intents.detect(text).abusive


@pytest.mark.parametrize(("text", "hazard", "first"), [
    ("Cháy nhà … có người còn kẹt bên trong!!!", "fire", "114"),
    ("co nguoi bi dien giat o cho cuu voi", "electric", "115"),
    ("CHÁY!!! cứu với", "fire", "114"),
    ("mắc kẹt trong thang máy", "trapped", "114"),
    ("Đang có đánh nhau cầm dao", "violence", "113"),
    ("cíu vs mn ơi", "help", "114"),
    ("A child is drowning in the lake", "drowning", "114"),
])
def test_emergencies_and_their_numbers(intents: Intents, text: str, hazard: str,
                                       first: str) -> None:
    got = intents.detect(text)
    assert got.name == "emergency" and got.hazard is not None
    assert got.hazard.name == hazard and got.hazard.numbers[0] == first


@pytest.mark.parametrize("text", [
    "Xe tải đậu để người đi bộ phải xuống lòng đường",  # để người ≠ đè người
    "ổ gà nhỏ trước nhà", "vỉa hè bị nứt", "bóng đèn đường bị cháy", "kẹt xe ở ngã tư",
    "tra cứu PA-2611-000001", "quán ăn lấn chiếm vỉa hè, nguy cơ cháy nổ cao",
    "nhóm thanh niên chạy xe tốc độ cao", "công ty chưa cử người đến sửa",
    "biển báo bị xe tông cong", "bị giật điện thoại trên đường",
])
def test_no_emergency(intents: Intents, text: str) -> None:
    assert intents.detect(text).name != "emergency"


def test_corrections_say_what_they_replace(intents: Intents) -> None:
    got = intents.detect("nhầm, không phải Lê Lợi mà là Nguyễn Huệ", "confirming")
    assert (got.name, got.old, got.new) == ("correction", "Lê Lợi", "Nguyễn Huệ")
    got = intents.detect("Sửa lại: địa chỉ là 25 Hai Bà Trưng", "confirming")
    assert got.name == "correction" and got.old is None and "25 Hai Bà Trưng" in (got.new or "")
    assert intents.detect("không, sai rồi", "confirming").name == "deny"


def test_ok_confirms_only_under_a_summary(intents: Intents) -> None:
    assert intents.detect("ok", "confirming").name == "confirm"
    assert intents.detect("ok", "idle").name == "ack"
    assert intents.detect("gửi ảnh cống vỡ ở kiệt 4", "confirming").name == "report"


def test_language(intents: Intents) -> None:
    assert intents.detect("There is a pothole on my street").lang == "en"
    assert intents.detect("ổ gà trên đường").lang == "vi"
    assert intents.detect("o ga tren duong Le Loi").lang == "vi"


def test_out_of_scope_but_complaints_are_reports(intents: Intents) -> None:
    assert intents.detect("Cho hỏi làm căn cước ở đâu?").topic == "id_card"
    assert intents.detect("Nộp hồ sơ làm căn cước 2 tháng vẫn chưa có").name == "report"
    assert intents.detect("Nhà bên xây không có giấy phép xây dựng thì báo ai ạ?").name \
        == "report"


@pytest.fixture
async def sessions(db_url: str):
    engine = create_engine(db_url)
    yield session_factory(engine)
    await engine.dispose()


async def test_duty_alerts_in_the_store(sessions) -> None:
    async with sessions() as s:
        citizen = Citizen()
        s.add(citizen)
        await s.flush()
        report = Report(channel="web", citizen_id=citizen.id or 0, sender="web:x",
                        status=ReportStatus.SUBMITTED, code="PA-2612-000001", urgent=True)
        s.add(report)
        await s.flush()
        alert = alerts_repo.add_alert(s, report.id or 0, "fire", ["114"], "web")
        await s.commit()
        alert_id, report_id, citizen_id = alert.id, report.id, citizen.id
    async with sessions() as s:
        (open_one,) = await alerts_repo.open_alerts(s)
        assert open_one.id == alert_id and open_one.numbers == ["114"]
        assert [a.id for a in await alerts_repo.alerts_since(s, 0)] == [alert_id]
        assert await alerts_repo.alerts_since(s, alert_id or 0) == []
        assert [a.id for a in await alerts_repo.alerts_of(s, report_id or 0)] == [alert_id]
        assert [r.code for r in await alerts_repo.recent_reports_of(s, citizen_id or 0)] == [
            "PA-2612-000001"]
    async with sessions() as s:
        from store.models import Operator
        op = Operator(username="duty", password_hash="x")
        s.add(op)
        await s.flush()
        assert await alerts_repo.acknowledge(s, alert_id or 0, op.id or 0) is True
        assert await alerts_repo.acknowledge(s, alert_id or 0, op.id or 0) is False
        await s.commit()
    async with sessions() as s:
        assert await alerts_repo.open_alerts(s) == []
