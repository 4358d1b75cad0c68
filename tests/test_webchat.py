"""The web chat channel end to end: webhook route, durable ingest, dialog, replies, codes.

Also the generic route's bad-input answers (401/403/400/413/404) as fixtures beside the
good ones, and the integration API and Open311 views of the report that results.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from sqlmodel import func, select

from channels.web import session_token
from gateway.keys import SERVICES
from store.models import InboundEvent, Outbox, Report

SECRET = "test-session-secret"
SID = "sid_0123456789abcdef"


def body(**fields: Any) -> dict[str, Any]:
    return {"sid": SID, "token": session_token(SECRET, SID), **fields}


async def post(client: Any, payload: Any, raw: bytes | None = None) -> Any:
    data = raw if raw is not None else json.dumps(payload, ensure_ascii=False).encode()
    return await client.post("/webhooks/web", data=data,
                             headers={"Content-Type": "application/json"})


async def replies(client: Any, after: int = 0) -> list[dict[str, Any]]:
    resp = await client.get("/chat/messages", params={
        "sid": SID, "token": session_token(SECRET, SID), "after": str(after)})
    assert resp.status == 200
    return (await resp.json())["messages"]


async def count(app: Any, model: Any) -> int:
    async with app[SERVICES].sessions() as s:
        return (await s.exec(select(func.count()).select_from(model))).one()


# Bad input, each answered without storing anything.
BAD_REQUESTS = [
    ("missing session", {"id": "m1", "text": "x"}, None, 401),
    ("forged token", {"sid": SID, "token": "0" * 64, "id": "m1", "text": "x"}, None, 403),
    ("malformed JSON", None, b'{"sid": "' + SID.encode() + b'", ', 400),
    ("not an object", None, b"[1, 2, 3]", 401),
    ("message id missing", body(text="x"), None, 400),
    ("foreign attachment url", body(id="m1", attachments=[{"url": "http://evil/x.jpg"}]),
     None, 400),
    ("location out of range", body(id="m1", location={"lat": 123, "lon": 0}), None, 400),
    ("oversized body", body(id="m1", text="a" * 70_000), None, 413),
]


@pytest.mark.parametrize(("case", "payload", "raw", "status"), BAD_REQUESTS,
                         ids=[c[0] for c in BAD_REQUESTS])
async def test_bad_requests_are_refused(settings_factory, gateway_client, case, payload, raw,
                                        status) -> None:
    client = await gateway_client(settings_factory())
    resp = await post(client, payload, raw)
    assert resp.status == status, case
    assert await count(client.app, InboundEvent) == 0


async def test_unknown_and_disabled_channels_answer_404(settings_factory, gateway_client) -> None:
    client = await gateway_client(settings_factory())
    assert (await client.post("/webhooks/nosuch", data=b"{}")).status == 404
    # No Telegram secrets configured: the channel is disabled and says so in /readyz.
    assert (await client.post("/webhooks/telegram", data=b"{}")).status == 404
    ready = await (await client.get("/readyz")).json()
    assert ready["channels"]["telegram"].startswith("disabled")
    assert ready["channels"]["web"] == "enabled"


async def test_duplicate_delivery_creates_nothing_new(settings_factory, gateway_client,
                                                      drain_app) -> None:
    client = await gateway_client(settings_factory())
    msg = body(id="dup-1", text="Cống thoát nước bị nghẹt ở kiệt 12 Lê Lợi, phường Phú Hội")
    for _ in range(3):
        assert (await post(client, msg)).status == 200
    await drain_app(client.app)
    assert await count(client.app, InboundEvent) == 1
    assert await count(client.app, Report) == 1
    metrics = await (await client.get("/metrics")).text()
    assert 'paht_messages_duplicate_total{channel="web"} 2' in metrics
    assert 'paht_messages_accepted_total{channel="web"} 1' in metrics


async def test_conversation_gets_a_tracking_code(settings_factory, gateway_client,
                                                 drain_app) -> None:
    client = await gateway_client(settings_factory(review_policy="all"))
    app = client.app
    await post(client, body(id="1", text="Đèn đường không sáng mấy hôm nay rồi"))
    await drain_app(app)
    first = await replies(client)
    assert "ở đâu" in first[-1]["text"]  # the bot asks for the place, once
    assert first[-1]["buttons"][0]["kind"] == "location"

    await post(client, body(id="2", text="", location={"lat": 16.4637, "lon": 107.5909}))
    await drain_app(app)
    summary = (await replies(client, first[-1]["id"]))[-1]
    assert "Nội dung: Đèn đường không sáng" in summary["text"]
    # A shared location is named in words, never as raw coordinates.
    assert "vị trí anh/chị đã chia sẻ" in summary["text"]
    assert "16.46370" not in summary["text"] and "bạn" not in summary["text"]
    assert [b["payload"] for b in summary["buttons"]] == ["confirm", "cancel"]

    await post(client, body(id="3", text="", postback="confirm"))
    await drain_app(app)
    done = (await replies(client, summary["id"]))[-1]["text"]
    assert "PA-" in done
    assert "Trung tâm đã tiếp nhận phản ánh của anh/chị" in done
    code = re.search(r"PA-\d{4}-\d{6}", done).group(0)

    async with app[SERVICES].sessions() as s:
        report = (await s.exec(select(Report))).one()
    assert report.code == code and report.status == "submitted"
    assert report.lat == pytest.approx(16.4637)
    assert report.text == "Đèn đường không sáng mấy hôm nay rồi"

    # The citizen looks the code up, without diacritics.
    await post(client, body(id="4", text=f"tra cuu {code}"))
    await drain_app(app)
    status = (await replies(client))[-1]["text"]
    assert code in status and "chờ phân loại" in status

    api = await client.get(f"/api/v1/reports/{code}",
                           headers={"Authorization": "Bearer test-token"})
    assert api.status == 200
    detail = await api.json()
    assert detail["code"] == code and detail["location"]["lat"] == pytest.approx(16.4637)
    assert [h["status"] for h in detail["history"]] == ["submitted"]
    assert len(detail["messages"]) == 3
    assert "phone" not in detail["citizen"]

    o311 = await client.get("/open311/v2/requests.json")
    items = await o311.json()
    assert [i["service_request_id"] for i in items] == [code]
    assert items[0]["status"] == "open" and isinstance(items[0]["lat"], float)


async def test_greetings_and_thanks_create_no_report(settings_factory, gateway_client,
                                                     drain_app) -> None:
    client = await gateway_client(settings_factory())
    for n, text in enumerate(["Xin chào", "chao ad", "cam on nhieu"]):
        await post(client, body(id=f"g{n}", text=text))
    await drain_app(client.app)
    assert await count(client.app, Report) == 0
    texts = [m["text"] for m in await replies(client)]
    assert len(texts) == 3 and "cảm ơn" in texts[-1].lower()


async def test_cancel_drops_the_draft(settings_factory, gateway_client, drain_app) -> None:
    client = await gateway_client(settings_factory())
    await post(client, body(id="1", text="Rác thải đổ bừa bãi đầu hẻm"))
    await post(client, body(id="2", text="/huy"))
    await drain_app(client.app)
    async with client.app[SERVICES].sessions() as s:
        report = (await s.exec(select(Report))).one()
    assert report.status == "rejected" and report.code is None
    assert "cancelled_by_citizen" in report.flags


async def test_photo_upload_is_attached(settings_factory, gateway_client, drain_app) -> None:
    settings = settings_factory()
    client = await gateway_client(settings)
    jpeg = b"\xff\xd8\xff\xe0" + b"0" * 100
    up = await client.post("/chat/upload", data=jpeg, params={
        "sid": SID, "token": session_token(SECRET, SID)}, headers={"Content-Type": "image/jpeg"})
    assert up.status == 200
    url = (await up.json())["url"]
    await post(client, body(id="p1", text="Cây đổ chắn ngang đường Hùng Vương",
                            attachments=[{"url": url, "mime": "image/jpeg"}]))
    await drain_app(client.app)
    async with client.app[SERVICES].sessions() as s:
        report = (await s.exec(select(Report))).one()
    assert report.attachments[0]["kind"] == "image"
    assert (settings.resolved_media_dir() / report.attachments[0]["path"]).read_bytes() == jpeg
    served = await client.get(url)
    assert served.status == 200 and await served.read() == jpeg
    assert (await client.get("/media/../db/paht.db")).status == 404


async def test_upload_needs_a_session(settings_factory, gateway_client) -> None:
    client = await gateway_client(settings_factory())
    resp = await client.post("/chat/upload", data=b"x", params={"sid": SID, "token": "bad"},
                             headers={"Content-Type": "image/jpeg"})
    assert resp.status == 403


async def test_failure_mid_pipeline_leaves_no_partial_report(
        settings_factory, gateway_client, drain_app, monkeypatch) -> None:
    from gateway.domain.dialog import Dialog

    client = await gateway_client(settings_factory(worker_max_attempts=2))
    real = Dialog.handle
    calls = {"n": 0}

    async def flaky(self, session, msg, *args, **kwargs):
        outcome = await real(self, session, msg, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 1 or "poison" in msg.text:
            raise RuntimeError("crash after the dialog changed things")
        return outcome

    monkeypatch.setattr(Dialog, "handle", flaky)
    await post(client, body(id="1", text="Nước sinh hoạt bị đục, có mùi lạ ở tổ 5"))
    await drain_app(client.app)
    # The first attempt rolled back completely: no draft, no reply.
    assert await count(client.app, Report) == 0
    assert await count(client.app, Outbox) == 0

    async def due_now() -> None:
        async with client.app[SERVICES].sessions() as s:
            for e in (await s.exec(select(InboundEvent))).all():
                e.next_attempt_at = e.accepted_at
                s.add(e)
            await s.commit()

    await post(client, body(id="2", text="poison"))
    for _ in range(3):
        await due_now()
        await drain_app(client.app)
    async with client.app[SERVICES].sessions() as s:
        events = {e.external_id: e for e in (await s.exec(select(InboundEvent))).all()}
        report = (await s.exec(select(Report))).one()
    assert events[f"{SID}:1"].status == "done"
    assert events[f"{SID}:2"].status == "parked" and "crash" in events[f"{SID}:2"].last_error
    assert report.text == "Nước sinh hoạt bị đục, có mùi lạ ở tổ 5"
    assert await count(client.app, Outbox) == 1


@pytest.mark.parametrize(("mime", "ok"), [
    ("image/jpeg", True), ("audio/ogg", True), ("video/mp4", True), ("application/pdf", True),
    (None, True), ("text/html", False), ("image/svg+xml", False),
    ("application/x-msdownload", False), ("application/zip", False),
])
def test_media_type_allow_list(mime, ok) -> None:
    from gateway.workers.media import media_type_allowed

    assert media_type_allowed(mime) is ok


async def test_history_and_open_draft_survive_a_reload(settings_factory, gateway_client,
                                                       drain_app) -> None:
    client = await gateway_client(settings_factory(review_policy="all"))
    page = await client.get("/")
    assert "xin chào anh/chị" in (await page.text()).lower()  # the welcome explains what to send
    await post(client, body(id="h1", text="Rác thải đổ bừa bãi đầu hẻm 45 Trần Phú"))
    await drain_app(client.app)
    await post(client, body(id="h2", text="", location={"lat": 16.46, "lon": 107.59}))
    await drain_app(client.app)
    # The page reloads: the session kept in the browser asks for everything so far.
    auth = {"sid": SID, "token": session_token(SECRET, SID)}
    resp = await client.get("/chat/history", params=auth)
    assert resp.status == 200
    data = await resp.json()
    sides = [m["from"] for m in data["messages"]]
    assert sides == ["me", "bot", "me", "bot"]
    assert data["messages"][0]["text"].startswith("Rác thải")
    assert data["messages"][2].get("location") is True
    summary = data["messages"][-1]
    assert [b["payload"] for b in summary["buttons"]] == ["confirm", "cancel"]
    assert data["after"] == summary["id"]
    # The open draft is still there: confirming after the reload files it.
    await post(client, body(id="h3", text="", postback="confirm"))
    await drain_app(client.app)
    after = await client.get("/chat/history", params=auth)
    assert "PA-" in (await after.json())["messages"][-1]["text"]
    bad = await client.get("/chat/history", params={"sid": SID, "token": "forged"})
    assert bad.status == 403
