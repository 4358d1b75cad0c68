"""Scripted conversations for issue 13, played on the web chat and on the Telegram, SMS and
Zalo webhooks through the same dialog: emergencies first, polite moderation, sentences
understood, corrections, the window, the centre's voice, English.
"""

from __future__ import annotations

import re

import pytest
from sqlmodel import select

from gateway.keys import SERVICES
from gateway.workers.jobs import close_expired_drafts
from store.models import Conversation, utcnow
from store.repos import alerts as alerts_repo
from tests.dialog_support import CHANNELS, Citizen, citizen

CODE = re.compile(r"PA-\d{4}-\d{6}")
CHATTY = ("web", "telegram", "zalo")  # channels where the citizen confirms a summary


async def _expire(c: Citizen) -> int:
    from datetime import timedelta
    async with c.app[SERVICES].sessions() as s:
        for conv in (await s.exec(select(Conversation))).all():
            if conv.expires_at is not None:
                conv.expires_at = utcnow() - timedelta(seconds=1)
                s.add(conv)
        await s.commit()
    return await close_expired_drafts(c.app[SERVICES])


def _no_bare_ban(texts: list[str]) -> None:
    for text in texts:  # the centre says "anh/chị", never "bạn"
        assert not re.search(r"\bbạn\b", text), text
        for word in ("/huy", "tệp", "phản ánh đang soạn"):
            assert word not in text, text


# -- 1. emergencies ------------------------------------------------------------------------

@pytest.mark.parametrize("kind", CHANNELS)
async def test_fire_with_people_trapped_gets_114_at_once_and_alerts_the_duty_officer(
        kind, settings_factory, gateway_client, drain_app) -> None:
    c = await citizen(kind, settings_factory, gateway_client)
    await c.say("Cháy nhà … có người còn kẹt bên trong!!!")
    await drain_app(c.app)
    first, *rest = await c.texts()
    assert "114" in first and CODE.search(first)  # the very first reply: the number to call
    (report,) = await c.reports()
    assert report.status == "submitted" and report.urgent and "emergency" in report.flags
    assert "hazard:fire" in report.flags and "no_place" in report.flags
    (alert,) = await c.alerts()
    assert alert.hazard == "fire" and alert.numbers[0] == "114" and alert.acknowledged_at is None
    async with c.app[SERVICES].sessions() as s:
        assert [a.id for a in await alerts_repo.open_alerts(s)] == [alert.id]
    assert rest and "nơi xảy ra" in rest[-1]  # the place is asked for after
    await c.say("số 5 kiệt 12 đường Lê Lợi, phường Phú Hội")
    await drain_app(c.app)
    (report,) = await c.reports()
    assert report.address and "Lê Lợi" in report.address and "no_place" not in report.flags
    assert report.code in (await c.texts())[-1]
    _no_bare_ban(await c.texts())


@pytest.mark.parametrize(("text", "number", "hazard"), [
    ("co nguoi bi dien giat o cho cuu voi", "115", "electric"),
    ("CHÁY!!! cứu với", "114", "fire"),
    ("Có người mắc kẹt trong thang máy chung cư", "114", "trapped"),
    ("có đứa nhỏ bị nước cuốn trôi ở sông", "114", "drowning"),
    ("Đang có đánh nhau cầm dao trước quán", "113", "violence"),
    ("ro ri gas nong nac trong nha", "114", "gas"),
])
async def test_every_hazard_gets_its_number(text, number, hazard, settings_factory,
                                            gateway_client, drain_app) -> None:
    c = await citizen("web", settings_factory, gateway_client)
    await c.say(text)
    await drain_app(c.app)
    first = (await c.texts())[0]
    assert f"gọi ngay {number}" in first  # the hazard's number comes first
    (alert,) = await c.alerts()
    assert alert.hazard == hazard


@pytest.mark.parametrize(("text", "urgent"), [
    ("Xe tải đậu ở kiệt 4 để người đi bộ phải tránh xuống lòng đường", False),
    ("Có một ổ gà nhỏ trước số 8 Trần Phú", False),
    ("Vỉa hè bị nứt vỡ trước số 20 Hùng Vương", False),
    ("Kẹt xe kéo dài ở ngã tư Hùng Vương", False),
    ("Cây đổ chắn ngang đường Lê Lợi", True),  # urgent for operators, no danger to life
    ("Bóng đèn đường bị cháy ở kiệt 7 Nguyễn Huệ", None),  # the classifier's call
])
async def test_no_emergency_for_ordinary_problems(text, urgent, settings_factory,
                                                  gateway_client, drain_app) -> None:
    c = await citizen("web", settings_factory, gateway_client)
    await c.say(text)
    await c.press("confirm")
    await drain_app(c.app)
    (report,) = await c.reports()
    assert report.status == "submitted" and "emergency" not in report.flags
    if urgent is not None:
        assert report.urgent is urgent
    assert not await c.alerts()
    assert not any("114" in t for t in await c.texts())


# -- 2. moderation -------------------------------------------------------------------------

async def test_ordinary_words_are_never_abuse(settings_factory, gateway_client,
                                              drain_app) -> None:
    c = await citizen("web", settings_factory, gateway_client)
    # đi, đeo, cụt: the diacritic-free forms of three abuse words.
    await c.say("Đường cụt ở kiệt 4 Lê Lợi đầy rác, người đi bộ phải đeo khẩu trang")
    await c.press("confirm")
    await drain_app(c.app)
    (report,) = await c.reports()
    assert "abusive" not in report.flags
    assert not any("lịch sự" in t for t in await c.texts())


@pytest.mark.parametrize("kind", ["sms", "zalo"])
async def test_real_abuse_is_flagged_politely_and_the_report_still_goes(
        kind, settings_factory, gateway_client, drain_app) -> None:
    c = await citizen(kind, settings_factory, gateway_client)
    await c.say("đm rác ở kiệt 3 Phan Bội Châu không ai dọn")
    await drain_app(c.app)
    texts = await c.texts()
    assert "lịch sự" in texts[0] and "vẫn được tiếp nhận" in texts[0]
    (report,) = await c.reports()
    assert "abusive" in report.flags
    if kind == "sms":
        assert report.status == "submitted"


# -- 3. sentences and numbered replies -------------------------------------------------------

@pytest.mark.parametrize("kind", CHATTY)
@pytest.mark.parametrize("answer", ["đúng rồi, gửi giúp tôi", "ok gửi đi ad", "ừ rứa gửi đi"])
async def test_confirm_in_a_sentence_submits_without_appending(
        kind, answer, settings_factory, gateway_client, drain_app) -> None:
    c = await citizen(kind, settings_factory, gateway_client)
    await c.say("Rác thải đổ bừa bãi đầu hẻm 45 Trần Phú")
    await drain_app(c.app)
    await c.say(answer)
    await drain_app(c.app)
    (report,) = await c.reports()
    assert report.status == "submitted" and report.text == "Rác thải đổ bừa bãi đầu hẻm 45 Trần Phú"
    done = (await c.texts())[-1]
    assert f"Trung tâm đã tiếp nhận phản ánh của anh/chị, mã số {report.code}" in done


@pytest.mark.parametrize("kind", CHATTY)
@pytest.mark.parametrize("answer", ["À thôi không cần nữa", "huy", "Never mind"])
async def test_cancel_in_a_sentence(kind, answer, settings_factory, gateway_client,
                                    drain_app) -> None:
    c = await citizen(kind, settings_factory, gateway_client)
    await c.say("Đèn đường hỏng trước số 12 Lê Lợi")
    await drain_app(c.app)
    await c.say(answer)
    await drain_app(c.app)
    (report,) = await c.reports()
    assert report.status == "rejected" and report.text == "Đèn đường hỏng trước số 12 Lê Lợi"


async def test_thanks_deny_and_ok_never_become_report_text(settings_factory, gateway_client,
                                                           drain_app) -> None:
    c = await citizen("telegram", settings_factory, gateway_client)
    await c.say("Cống thoát nước bị tắc ở kiệt 3 Hùng Vương")
    await c.say("không, sai rồi")
    await c.say("Dạ em cảm ơn nhiều ạ")
    await drain_app(c.app)
    texts = await c.texts()
    assert "muốn sửa" in texts[1] and "cảm ơn" in texts[2].lower()
    await c.press("confirm")
    await drain_app(c.app)
    (report,) = await c.reports()
    assert report.text == "Cống thoát nước bị tắc ở kiệt 3 Hùng Vương"
    await c.say("ok")  # after the code: acknowledged, no new draft
    await drain_app(c.app)
    assert len(await c.reports()) == 1 and "đã rõ" in (await c.texts())[-1]


async def test_zalo_numbered_replies(settings_factory, gateway_client, drain_app) -> None:
    c = await citizen("zalo", settings_factory, gateway_client)
    await c.say("Ổ gà lớn giữa đường, xe máy rất dễ ngã")
    await drain_app(c.app)
    assert (await c.replies())[-1]["buttons"] == ["location"]
    await c.say("1")  # "1. 📍 Gửi vị trí" → how to share it, not a greeting
    await drain_app(c.app)
    assert "Vị trí" in (await c.texts())[-1] and "xin chào" not in (await c.texts())[-1].lower()
    await c.say("trước số 40 đường Điện Biên Phủ")
    await drain_app(c.app)
    assert (await c.replies())[-1]["buttons"] == ["confirm", "cancel"]
    await c.say("2")  # "2. ❌ Hủy"
    await drain_app(c.app)
    (report,) = await c.reports()
    assert report.status == "rejected" and "2" not in report.text.split()


# -- 4. status, out of scope ---------------------------------------------------------------

@pytest.mark.parametrize("kind", CHANNELS)
async def test_status_questions(kind, settings_factory, gateway_client, drain_app) -> None:
    c = await citizen(kind, settings_factory, gateway_client)
    await c.say("Mất nước sinh hoạt ở số 12 kiệt 4 Phan Đình Phùng")
    await drain_app(c.app)
    if kind in CHATTY:
        await c.press("confirm")
        await drain_app(c.app)
    (report,) = await c.reports()
    await c.say(f"Cho hỏi phản ánh {report.code} đến đâu rồi ạ?")
    await drain_app(c.app)
    assert report.code in (await c.texts())[-1]
    await c.say("phản ánh của tôi xử lý đến đâu rồi?")  # no code: my own recent reports
    await drain_app(c.app)
    assert report.code in (await c.texts())[-1]
    assert len(await c.reports()) == 1
    assert await _expire(c) == 0 and len(await c.reports()) == 1


@pytest.mark.parametrize("kind", ["web", "sms"])
async def test_out_of_scope_question_gets_a_pointer_and_no_report(
        kind, settings_factory, gateway_client, drain_app) -> None:
    c = await citizen(kind, settings_factory, gateway_client)
    await c.say("Cho hỏi thủ tục làm lại căn cước công dân ở đâu ạ?")
    await drain_app(c.app)
    assert "VNeID" in (await c.texts())[-1]
    await _expire(c)
    assert await c.reports() == []


# -- 5. the window ---------------------------------------------------------------------------

async def test_window_closes_quietly_on_small_talk_and_flags_the_rest(
        settings_factory, gateway_client, drain_app) -> None:
    c = await citizen("web", settings_factory, gateway_client)
    for text in ("Xin chào", "Dạ em cảm ơn nhiều ạ"):
        await c.say(text)
    await drain_app(c.app)
    assert await _expire(c) == 0 and await c.reports() == []
    await c.photo()  # a lone photo: asked what it shows; at the window, to an operator
    await drain_app(c.app)
    assert "Ảnh cho thấy sự việc gì" in (await c.texts())[-1]
    assert await _expire(c) == 1
    (photo,) = await c.reports()
    assert photo.status == "submitted" and {"photo_only", "no_place"} <= set(photo.flags)


async def test_window_submits_a_problem_without_place_for_review(
        settings_factory, gateway_client, drain_app) -> None:
    c = await citizen("telegram", settings_factory, gateway_client)
    await c.say("Cống thoát nước bị vỡ nắp rất nguy hiểm")
    await drain_app(c.app)
    assert await _expire(c) == 1
    (report,) = await c.reports()
    assert report.status == "submitted" and "no_place" in report.flags
    assert report.code in (await c.texts())[-1]


# -- 6. dialog behaviour -------------------------------------------------------------------

@pytest.mark.parametrize("kind", CHATTY)
async def test_correction_replaces_the_place(kind, settings_factory, gateway_client,
                                             drain_app) -> None:
    c = await citizen(kind, settings_factory, gateway_client)
    await c.say("Rác thải ùn ứ trên đường Lê Lợi")
    await drain_app(c.app)
    await c.say("nhầm, không phải Lê Lợi mà là Nguyễn Huệ")
    await drain_app(c.app)
    last = (await c.texts())[-1]
    assert "Nguyễn Huệ" in last and "Lê Lợi" not in last
    (report,) = await c.reports()
    assert "Lê Lợi" not in (report.address or "") + report.text


async def test_place_only_asks_what_happened_and_summary_is_shown_again(
        settings_factory, gateway_client, drain_app) -> None:
    c = await citizen("web", settings_factory, gateway_client)
    await c.say("ở số 12 đường Lê Lợi")
    await drain_app(c.app)
    assert "sự việc ở đó là gì" in (await c.texts())[-1]
    await c.say("đèn đường bị hỏng mấy hôm nay")
    await drain_app(c.app)
    summary = (await c.texts())[-1]
    assert "Lĩnh vực dự kiến: Hạ tầng đô thị" in summary and "Lê Lợi" in summary
    assert "Khác" not in summary
    await c.say("cột đèn còn bị nghiêng nữa")
    await drain_app(c.app)
    again = (await c.texts())[-1]
    assert "cột đèn còn bị nghiêng" in again and "Gửi phản ánh" in again


async def test_long_message_is_shortened_in_the_summary(settings_factory, gateway_client,
                                                        drain_app) -> None:
    c = await citizen("web", settings_factory, gateway_client)
    long_text = "Rác thải đổ bừa bãi ở đầu kiệt 5 Lê Lợi. " + "Mùi hôi thối bốc lên nồng nặc. " * 50
    await c.say(long_text)
    await drain_app(c.app)
    summary = (await c.texts())[-1]
    assert len(summary) < 800 and "(còn nữa)" in summary
    (report,) = await c.reports()
    assert report.text == long_text.strip()


async def test_two_problems_are_offered_separately(settings_factory, gateway_client,
                                                   drain_app) -> None:
    c = await citizen("web", settings_factory, gateway_client)
    await c.say("Đèn đường trước số 10 Lê Lợi bị hỏng, còn rác thải thì đổ đầy vỉa hè cả tuần")
    await drain_app(c.app)
    offer = (await c.replies())[-1]
    assert "2 sự việc" in offer["text"] and "split" in offer["buttons"]
    await c.press("split")
    await drain_app(c.app)
    reports = await c.reports()
    assert len(reports) == 2 and all(r.status == "submitted" for r in reports)
    assert reports[0].sector != reports[1].sector
    done = (await c.texts())[-1]
    assert all(r.code in done for r in reports)


# -- 7. the centre's voice and English --------------------------------------------------------

async def test_english_gets_english(settings_factory, gateway_client, drain_app) -> None:
    c = await citizen("web", settings_factory, gateway_client)
    await c.say("There is a big pothole on Tran Phu street near the market")
    await drain_app(c.app)
    assert "Where is this" in (await c.texts())[-1] or "Please check" in (await c.texts())[-1]
    await c.say("Fire! My neighbour's house is on fire")
    await drain_app(c.app)
    assert any("call 114" in t for t in await c.texts())


@pytest.mark.parametrize("kind", CHANNELS)
async def test_a_whole_report_in_the_centres_voice(kind, settings_factory, gateway_client,
                                                   drain_app) -> None:
    c = await citizen(kind, settings_factory, gateway_client)
    await c.say("Đèn đường hỏng cả tuần nay")
    await drain_app(c.app)
    if kind != "sms":
        await c.location(16.4637, 107.5909)
        await drain_app(c.app)
        summary = (await c.texts())[-1]
        if kind in CHATTY:
            assert "vị trí anh/chị đã chia sẻ" in summary and "16.46370" not in summary
            await c.press("confirm")
            await drain_app(c.app)
    else:
        await c.say("kiet 52 Hung Vuong")
        await drain_app(c.app)
    (report,) = await c.reports()
    assert report.status == "submitted"
    _no_bare_ban(await c.texts())


async def test_hotline_emergency_gets_the_spoken_advice_text(settings_factory, gateway_client
                                                             ) -> None:
    from channels.base import InboundMessage
    from gateway.domain.dialog import Dialog
    from store.repos import citizens as citizens_repo
    from tests.dialog_support import settings_for

    client = await gateway_client(settings_for("sms", settings_factory))
    services = client.app[SERVICES]
    msg = InboundMessage(channel="voice", external_id="RE1", sender="tel:+84914000333",
                         text="", received_at=utcnow())
    async with services.sessions() as s:
        who = await citizens_repo.resolve_citizen(s, msg.sender, "voice", phone="+84914000333")
        out = await Dialog(services).handle(
            s, msg, who, transcript="cháy nhà rồi có người còn kẹt bên trong",
            transcript_confidence=0.9)
        await s.commit()
    assert "114" in out.replies[0].text and out.report is not None and out.report.urgent
    async with services.sessions() as s:
        (alert,) = await alerts_repo.alerts_of(s, out.report.id or 0)
    assert alert.channel == "voice" and alert.hazard == "fire"
    # What the hotline speaks (the voice channel's TwiML reads this key).
    spoken = services.texts.get("voice.emergency", numbers="114")
    assert "gọi ngay 114" in spoken and "bạn" not in spoken
