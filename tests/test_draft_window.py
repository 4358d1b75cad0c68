"""The conversation window: a draft the citizen never confirms is submitted when it closes."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlmodel import select

from channels.web import session_token
from gateway.keys import SERVICES
from gateway.workers.jobs import close_expired_drafts
from store.models import Conversation, Report, utcnow

SID = "window_session_0001"


async def _say(client, n: int, text: str) -> None:
    body = {"sid": SID, "token": session_token("test-session-secret", SID), "id": f"w{n}",
            "text": text}
    assert (await client.post("/webhooks/web", data=json.dumps(body))).status == 200


async def _expire(app) -> None:
    async with app[SERVICES].sessions() as s:
        conv = (await s.exec(select(Conversation))).one()
        conv.expires_at = utcnow() - timedelta(seconds=1)
        s.add(conv)
        await s.commit()


async def _replies(client) -> list[str]:
    resp = await client.get("/chat/messages", params={
        "sid": SID, "token": session_token("test-session-secret", SID), "after": "0"})
    return [m["text"] for m in (await resp.json())["messages"]]


async def test_unconfirmed_draft_is_submitted_when_the_window_closes(
        settings_factory, gateway_client, drain_app) -> None:
    client = await gateway_client(settings_factory(review_policy="all"))
    await _say(client, 1, "Cây xanh gãy cành đè lên vỉa hè số 30 đường Trần Hưng Đạo")
    await drain_app(client.app)
    # The summary, waiting to confirm.
    assert "Trung tâm xin xác nhận lại phản ánh" in (await _replies(client))[-1]
    assert await close_expired_drafts(client.app[SERVICES]) == 0  # still open
    await _expire(client.app)
    assert await close_expired_drafts(client.app[SERVICES]) == 1
    await drain_app(client.app)
    async with client.app[SERVICES].sessions() as s:
        report = (await s.exec(select(Report))).one()
    assert report.status == "submitted" and report.code
    assert report.code in (await _replies(client))[-1]
    assert await close_expired_drafts(client.app[SERVICES]) == 0  # nothing twice


async def test_a_message_after_the_window_starts_a_new_draft(
        settings_factory, gateway_client, drain_app) -> None:
    client = await gateway_client(settings_factory(review_policy="all"))
    await _say(client, 1, "Đèn đường tắt ở kiệt 52 Hùng Vương")
    await drain_app(client.app)
    await _expire(client.app)
    await _say(client, 2, "Rác thải ùn ứ trước chợ Đông Ba")
    await drain_app(client.app)
    async with client.app[SERVICES].sessions() as s:
        reports = (await s.exec(select(Report).order_by(Report.id))).all()
    assert [r.status for r in reports] == ["submitted", "draft"]
    assert reports[0].text == "Đèn đường tắt ở kiệt 52 Hùng Vương"
    assert reports[1].text == "Rác thải ùn ứ trước chợ Đông Ba"


async def test_an_empty_expired_draft_is_dropped_quietly(settings_factory, gateway_client,
                                                         drain_app) -> None:
    client = await gateway_client(settings_factory())
    body = {"sid": SID, "token": session_token("test-session-secret", SID), "id": "loc",
            "text": "", "location": {"lat": 16.46, "lon": 107.59}}
    await client.post("/webhooks/web", data=json.dumps(body))
    await drain_app(client.app)
    await _expire(client.app)
    assert await close_expired_drafts(client.app[SERVICES]) == 0
    async with client.app[SERVICES].sessions() as s:
        report = (await s.exec(select(Report))).one()
    assert report.code is None and "empty_draft" in report.flags


async def test_confirm_pressed_after_the_window_is_not_an_error(
        settings_factory, gateway_client, drain_app) -> None:
    client = await gateway_client(settings_factory(review_policy="all"))
    await _say(client, 1, "Rác thải ùn ứ trước chợ Đông Ba mấy ngày nay")
    await drain_app(client.app)
    await _expire(client.app)
    body = {"sid": SID, "token": session_token("test-session-secret", SID), "id": "w2",
            "text": "", "postback": "confirm"}
    assert (await client.post("/webhooks/web", data=json.dumps(body))).status == 200
    await drain_app(client.app)
    async with client.app[SERVICES].sessions() as s:
        (report,) = (await s.exec(select(Report))).all()
    assert report.status == "submitted"
    last = (await _replies(client))[-1]
    assert report.code in last and "không có phản ánh" not in last


async def test_small_talk_and_questions_are_closed_quietly(
        settings_factory, gateway_client, drain_app) -> None:
    client = await gateway_client(settings_factory())
    for n, text in enumerate(["chào ad", "Cho hỏi giờ làm việc của phường là mấy giờ?"]):
        await _say(client, 10 + n, text)
    await drain_app(client.app)
    async with client.app[SERVICES].sessions() as s:
        conv = (await s.exec(select(Conversation))).one()
        conv.expires_at = utcnow() - timedelta(seconds=1)
        s.add(conv)
        await s.commit()
    assert await close_expired_drafts(client.app[SERVICES]) == 0
    async with client.app[SERVICES].sessions() as s:
        reports = (await s.exec(select(Report))).all()
    (question,) = reports  # the greeting made no draft; the question did, and is dropped
    assert question.status == "rejected" and question.code is None
    assert "not_a_problem" in question.flags
