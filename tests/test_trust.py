"""The trust gate (issue 14): what the classifier reads, why a report goes to review, conflict
-aware routing, duplicates before forwarding, and what the sinks carry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlmodel import col, select

from gateway.domain import reports, trust
from gateway.domain.keywords import evaluate, format_evaluation
from gateway.domain.texts import Texts
from gateway.ops.metrics import Metrics
from gateway.services import Services
from nlp.classifier import Classifier
from nlp.second_opinion import parse_examples
from store.db import create_engine, session_factory
from store.models import Citizen, Identity, Outbox, Report, ReportStatus
from store.sinks import Open311Sink

S = ReportStatus


@pytest.fixture(scope="module")
def clf() -> Classifier:
    return Classifier.load()


# -- what is reported, not where ----------------------------------------------------------

@pytest.mark.parametrize(("text", "sector"), [
    # the object of the complaint wins over the setting around it
    ("Đề nghị lắp đèn tín hiệu giao thông ở chỗ học sinh qua đường trước trường tiểu học, "
     "phụ huynh và nhà trường đã kiến nghị nhiều lần.", "ha_tang_giao_thong"),
    ("Cáp quang treo sà thấp trước cổng trường, học sinh đi xe đạp dễ vướng.", "vien_thong"),
    ("Dây điện đứt rơi xuống đường trước trường mầm non.", "dien"),
    ("Đèn chiếu sáng trên trụ cao bị tắt, nguy hiểm cho người tham gia giao thông.",
     "ha_tang_do_thi"),
    ("Phụ huynh đậu xe tràn ra đường trước cổng trường gây kẹt xe.", "an_toan_giao_thong"),
    # ambiguous phrases resolved by their rule
    ("Vỉa hè trước bệnh viện có rác và nước thải, mất vệ sinh.", "ve_sinh_moi_truong"),
    ("Quán cơm trong chợ chế biến đồ ăn mất vệ sinh.", "y_te_attp"),
    ("Căn nhà bốc cháy, khói đen bốc lên cuồn cuộn.", "an_ninh_trat_tu"),
    ("Nhà máy gạch thải khói đen suốt ngày.", "ve_sinh_moi_truong"),
    ("Xe máy chạy ban đêm không bật đèn trên đường tránh.", "an_toan_giao_thong"),
    ("cot den duong bi nghieng", "ha_tang_do_thi"),
    ("cot dien truoc nha bi nghieng", "dien"),
    # common English words
    ("There is a pothole in front of my house.", "ha_tang_giao_thong"),
    ("flooding on our street after the rain", "ha_tang_do_thi"),
    ("garbage everywhere near the market", "ve_sinh_moi_truong"),
    ("street light broken near the bus stop", "ha_tang_do_thi"),
    ("power cut since 6am in our area", "dien"),
    ("water cut in my building for two days", "cap_nuoc"),
    ("too much noise from the bar every night", "an_ninh_trat_tu"),
])
def test_object_not_setting(clf: Classifier, text: str, sector: str) -> None:
    assert clf.classify(text).sector == sector


def test_context_alone_is_reviewed(clf: Classifier) -> None:
    res = clf.classify("Học sinh trường tiểu học đi học buổi sáng.")
    assert res.evidence_kind == "context" and "context_only" in res.reasons
    assert all(m.role == "context" for m in res.matches if m.sector == res.sector)


@pytest.mark.parametrize(("text", "absent"), [
    ("Người dân có mặt tại hiện trường cho biết mặt đường bị sụt lún.", "giao_duc"),
    ("Hệ thống định vị toàn cầu chỉ sai đường.", "ha_tang_giao_thong"),
    ("Khách lưu trú phàn nàn về phòng ốc.", "dien"),
])
def test_compound_guards(clf: Classifier, text: str, absent: str) -> None:
    assert all(m.sector != absent for m in clf.classify(text).matches)


def test_no_diacritics_short_syllables_count_little(clf: Classifier) -> None:
    # "co" (có/cô), "quan" (quán/quận) alone must not decide a sector
    res = clf.classify("toi co viec can hoi quan")
    assert res.needs_review


# -- routing ------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "Tổ CSGT ở chân cầu dừng xe tải ăn tiền rồi cho đi.",
    "Cán bộ địa chính phường đòi tiền mới ký hồ sơ cấp sổ đỏ.",
    "Cảnh sát khu vực nhận tiền bảo kê quán karaoke.",
])
def test_misconduct_goes_to_the_inspectorate_and_to_review(clf: Classifier, text: str) -> None:
    res = clf.classify(text)
    assert res.misconduct and res.needs_review and "misconduct" in res.reasons
    routed = clf.route(res.sector, text)
    assert routed.agency == clf.misconduct_agency and routed.reason == "misconduct"
    assert "Công an" not in routed.agency and routed.co_agencies == ()


def test_plain_traffic_report_is_not_misconduct(clf: Classifier) -> None:
    text = "Đề nghị CSGT xử lý xe tải chạy quá tốc độ qua khu dân cư."
    assert not clf.classify(text).misconduct
    assert clf.route("an_toan_giao_thong", text).reason == "sector"


# -- the gate -----------------------------------------------------------------------------

def _report(**fields: Any) -> Report:
    return Report(channel="voice", citizen_id=1, sender="tel:+84905000001", **fields)


def test_speech_is_trusted_only_when_good(clf: Classifier) -> None:
    cfg = trust.config_of(clf)
    said = "Đèn đường trong hẻm 12 bị tắt mấy đêm nay, tối om, đề nghị sửa."
    good = _report(transcript=said, transcript_confidence=0.93)
    assert trust.review_reasons(good, clf.classify(said), cfg) == []
    low = _report(transcript=said, transcript_confidence=0.60)
    assert "transcript_low_confidence" in trust.review_reasons(low, clf.classify(said), cfg)
    unknown = _report(transcript=said)
    assert "transcript_low_confidence" in trust.review_reasons(unknown, clf.classify(said), cfg)
    for foreign in ("가로등이 꺼져 있어요 골목", "the street light is broken in the alley"):
        rep = _report(transcript=foreign, transcript_confidence=0.99)
        assert "transcript_not_vietnamese" in trust.review_reasons(
            rep, clf.classify(foreign), cfg)


def test_empty_and_untranscribed_audio_always_reviewed(clf: Classifier) -> None:
    cfg = trust.config_of(clf)
    audio = _report(attachments=[{"kind": "audio", "url": "https://x/y.wav"}])
    reasons = trust.review_reasons(audio, clf.classify(""), cfg)
    assert {"empty", "no_transcript"} <= set(reasons)
    for flag in ("silent", "transcript_pending", "no_place", "photo_only", "emergency"):
        rep = _report(text="Đèn đường trong hẻm 12 bị tắt mấy đêm nay, tối om.", flags=[flag])
        assert f"flag:{flag}" in trust.review_reasons(rep, clf.classify(rep.text), cfg)


def test_without_classifier_everything_waits() -> None:
    rep = _report(text="abc")
    assert trust.apply_gate(rep, None, trust.TrustConfig()) == ["no_classifier"]
    assert rep.needs_review


# -- duplicates before forwarding ---------------------------------------------------------

@pytest.fixture
async def services(db_url: str, settings_factory: Any) -> AsyncIterator[Services]:
    settings = settings_factory(database_url=db_url, review_policy="low_confidence")
    engine = create_engine(settings.database_url)
    svc = Services(settings=settings, sessions=session_factory(engine),
                   texts=Texts.load(settings.config_dir), metrics=Metrics(),
                   classifier=Classifier.load(settings.config_dir))
    try:
        yield svc
    finally:
        await engine.dispose()


BLOCKED = ("Cống thoát nước trước nhà số 12 đường Lý Thường Kiệt bị tắc nghẹt, "
           "nước tràn lên mặt đường.")


async def _submit(svc: Services, n: int, text: str, lat: float | None, lon: float | None,
                  status: S | None = None) -> Report:
    async with svc.sessions() as session:
        citizen = Citizen(display_name=f"Dân {n}")
        session.add(citizen)
        await session.flush()
        urn = f"telegram:{7000 + n}"
        session.add(Identity(urn=urn, channel="telegram", citizen_id=citizen.id or 0))
        report = Report(channel="telegram", citizen_id=citizen.id or 0, sender=urn, text=text,
                        lat=lat, lon=lon)
        session.add(report)
        await session.flush()
        await reports.submit(session, svc, report)
        if status == S.FORWARDED and report.status == S.SUBMITTED:
            await svc.lifecycle.confirm(session, report, trust.CLASSIFIER)
        if status == S.FORWARDED:
            await svc.lifecycle.forward(session, report, "C-1")
        await session.commit()
        await session.refresh(report)
        return report


async def test_same_drain_twenty_metres_apart_is_linked(services: Services) -> None:
    first = await _submit(services, 1, BLOCKED, 16.4637, 107.5909, status=S.FORWARDED)
    assert first.status == S.FORWARDED
    again = BLOCKED.replace("tắc nghẹt", "tắc, rác bít kín")
    second = await _submit(services, 2, again, 16.46385, 107.5909)  # ~17 m north
    assert second.status == S.MERGED and second.duplicate_of == first.id
    async with services.sessions() as session:
        original = await session.get(Report, first.id)
        assert original is not None and f"subscriber:{second.citizen_id}" in original.flags
        rows = (await session.exec(select(Outbox).where(Outbox.report_id == second.id))).all()
    keys = {r.dedup_key or "" for r in rows}
    assert f"link:{second.code}" in keys  # the centre hears of the link
    assert not any(k.startswith("forward:") for k in keys)  # the duplicate is not forwarded
    assert any(k.startswith(f"notify:{second.code}:merged") for k in keys)  # citizen is told


async def test_likely_duplicate_far_away_waits_for_an_operator(services: Services) -> None:
    words = "Cống thoát nước bị tắc nghẹt lâu ngày, mưa xuống là nước tràn lên mặt đường."
    first = await _submit(services, 1, words, 16.4637, 107.5909)
    second = await _submit(services, 2, words, 16.4737, 107.6009)  # same words, ~1.5 km
    assert second.status == S.SUBMITTED and second.needs_review
    assert "possible_duplicate" in second.review_reasons
    assert second.suspected_duplicate_of == first.id
    async with services.sessions() as session:
        forwards = (await session.exec(select(Outbox).where(
            col(Outbox.dedup_key) == f"forward:{second.code}"))).all()
    assert forwards == []


async def test_unrelated_reports_are_not_duplicates(services: Services) -> None:
    await _submit(services, 1, BLOCKED, 16.4637, 107.5909)
    other = await _submit(services, 2, "Karaoke nhà số 40 hát đến 1 giờ sáng, rất ồn ào.",
                          16.4637, 107.5909)
    assert other.status != S.MERGED and other.suspected_duplicate_of is None


# -- sinks --------------------------------------------------------------------------------

def test_open311_form_carries_urgent_agency_and_link() -> None:
    sink = Open311Sink("http://central.invalid/open311/v2", api_key="k")
    form = sink._form({"code": "PA-1", "sector": "dien", "description": "x", "urgent": True,
                       "agency": "Công ty Điện lực", "duplicate_of": "PA-0", "address": "a"})
    assert form["attribute[paht_urgent]"] == "true"
    assert form["attribute[paht_agency]"] == "Công ty Điện lực"
    assert form["attribute[paht_duplicate_of]"] == "PA-0"
    plain = sink._form({"code": "PA-2", "urgent": False})
    assert plain["attribute[paht_urgent]"] == "false"
    assert "attribute[paht_duplicate_of]" not in plain


# -- learning from operators --------------------------------------------------------------

def test_evaluate_shows_changed_decisions(tmp_path: Any) -> None:
    before = Classifier.load()
    text = tmp_path / "sectors.toml"
    from importlib.resources import files
    proposed = files("config").joinpath("sectors.toml").read_text("utf-8").replace(
        'english = ["pothole", "potholes", ', 'english = [', 1)
    text.write_text(proposed, "utf-8")
    after = Classifier.load(sectors_file=text)
    examples = parse_examples(
        '{"text": "pothole on the main road", "sector": "ha_tang_giao_thong"}\n'
        '{"text": "mất điện cả khu phố từ sáng", "sector": "dien"}\n', strict=True)
    result = evaluate(examples, before, after)
    assert result["before"]["accuracy"] == 1.0 and result["after"]["accuracy"] == 0.5
    assert [c["gold"] for c in result["changed"]] == ["ha_tang_giao_thong"]
    assert "1 decisions changed" in format_evaluation(result)


def test_a_caller_keypad_confirmation_settles_what_was_read_back(clf: Classifier) -> None:
    cfg = trust.config_of(clf)
    said = "đèn đường hẻm mười hai tắt"
    heard = _report(transcript=said, transcript_confidence=0.55, flags=["no_place"])
    before = trust.review_reasons(heard, clf.classify(said), cfg)
    assert "transcript_low_confidence" in before and "flag:no_place" in before
    confirmed = _report(transcript=said, transcript_confidence=0.55, address="hẻm 12",
                        flags=["no_place", trust.CALLER_CONFIRMED])
    assert trust.review_reasons(confirmed, clf.classify(said), cfg) == []
    # Danger still reaches a person, whatever the caller pressed.
    urgent = _report(transcript=said, transcript_confidence=0.55, urgent=True,
                     flags=[trust.CALLER_CONFIRMED])
    assert "urgent" in trust.review_reasons(urgent, clf.classify(said), cfg)
