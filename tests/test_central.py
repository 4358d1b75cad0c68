"""Closing the loop (issue 8): the signed central status callback, Open311 polling, messages
to the citizen and to subscribers of merged duplicates, the rating prompt, and the SMS
fallback / hold when a channel's reply window has closed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlmodel import select

from channels.base import OutboundMessage, SendError, SendResult
from gateway.keys import SERVICES
from gateway.web.central import open311_status, poll_central
from gateway.workers.forwarder import Forwarder
from gateway.workers.outbox import OutboxSender, release_held
from store.central_models import CentralStatusEvent
from store.forward import sign
from store.models import Citizen, Conversation, Identity, Outbox, Report, ReportHistory, utcnow

try:
    from tests.fakes.central import API_KEY, FakeCentral, make_services, seed_report
except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from fakes.central import (  # type: ignore[no-redef]
        API_KEY,
        FakeCentral,
        make_services,
        seed_report,
    )

CALLBACK_SECRET = "central-callback-secret"
PATH = "/api/v1/central/status"


@pytest.fixture
async def client(settings_factory: Any, gateway_client: Any) -> Any:
    return await gateway_client(settings_factory(central_callback_secret=CALLBACK_SECRET))


async def post(client: Any, body: bytes | dict[str, Any], secret: str | None = CALLBACK_SECRET,
               header: str | None = None) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["X-PAHT-Signature"] = header
    elif secret is not None:
        headers["X-PAHT-Signature"] = sign(raw, secret)
    return await client.post(PATH, data=raw, headers=headers)


def event(status: str = "in_progress", event_id: str = "ev-1", **extra: Any) -> dict[str, Any]:
    return {"code": "PA-2611-000001", "status": status, "note": None, "agency": None,
            "event_id": event_id, **extra}


async def all_rows(services: Any, model: Any) -> list[Any]:
    async with services.sessions() as session:
        return list((await session.exec(select(model))).all())


async def notify_texts(services: Any) -> list[tuple[str, str]]:
    rows = [o for o in await all_rows(services, Outbox) if o.kind == "notify"]
    return [(o.recipient, o.payload["text"]) for o in sorted(rows, key=lambda o: o.id)]


# --- the callback: bad input as first-class cases ----------------------------------------

BAD_CALLBACKS: list[tuple[str, Any, dict[str, Any], int]] = [
    ("missing signature", event(), {"secret": None}, 401),
    ("wrong secret", event(), {"secret": "not-it"}, 403),
    ("signature not hex", event(), {"header": "sha256=zz"}, 403),
    ("signature of another body", event(), {"header": sign(b"{}", CALLBACK_SECRET)}, 403),
    ("not JSON", b"{code: 1", {}, 400),
    ("JSON array", b"[]", {}, 400),
    ("not UTF-8", b"\xff\xfe{}", {}, 400),
    ("no event_id", {k: v for k, v in event().items() if k != "event_id"}, {}, 400),
    ("no code", {**event(), "code": ""}, {}, 400),
    ("unknown status", event(status="forwarded"), {}, 400),
    ("note not a string", event(note=["x"]), {}, 400),
    ("unknown code", {**event(), "code": "PA-2611-999999"}, {}, 404),
]


@pytest.mark.parametrize(("case", "body", "how", "status"), BAD_CALLBACKS,
                         ids=[c[0] for c in BAD_CALLBACKS])
async def test_callback_refuses(client: Any, case: str, body: Any, how: dict[str, Any],
                                status: int) -> None:
    services = client.app[SERVICES]
    await seed_report(services, 1, status="forwarded", confirm=False)
    resp = await post(client, body, **how)
    assert resp.status == status, await resp.text()
    assert await all_rows(services, CentralStatusEvent) == []
    (report,) = await all_rows(services, Report)
    assert report.status == "forwarded"


async def test_callback_disabled_without_secret(settings_factory: Any,
                                                gateway_client: Any) -> None:
    client = await gateway_client(settings_factory())
    assert (await post(client, event(), secret="")).status == 404


async def test_callback_in_progress_then_resolved(client: Any) -> None:
    services = client.app[SERVICES]
    await seed_report(services, 1, status="forwarded", confirm=False)
    resp = await post(client, event(agency="UBND phường Phú Hội"))
    assert resp.status == 200 and (await resp.json())["outcome"] == "applied"
    again = await post(client, event(agency="UBND phường Phú Hội"))  # a replay of ev-1
    assert again.status == 200 and (await again.json())["duplicate"] is True
    resolved = event("resolved", "ev-2", note="Đã thay bóng đèn mới.")
    assert (await post(client, resolved)).status == 200
    late = await post(client, event("in_progress", "ev-3"))  # arrives after resolution
    assert (await late.json())["outcome"] == "stale"
    (report,) = await all_rows(services, Report)
    assert report.status == "resolved" and report.resolved_at is not None
    assert report.agency == "UBND phường Phú Hội"
    history = [(h.status, h.source) for h in await all_rows(services, ReportHistory)]
    assert history == [("in_progress", "central"), ("resolved", "central")]
    texts = await notify_texts(services)
    assert texts[0] == ("telegram:1001",
                        "Phản ánh PA-2611-000001 đang được UBND phường Phú Hội xử lý.")
    assert texts[1][1] == "Phản ánh PA-2611-000001 đã được xử lý: Đã thay bóng đèn mới."
    assert "đánh giá" in texts[2][1] and len(texts) == 3
    (prompt,) = [o for o in await all_rows(services, Outbox)
                 if o.dedup_key == "rate:PA-2611-000001"]
    payloads = [b["payload"] for b in prompt.payload["buttons"]]
    assert payloads == [f"rate:{n}" for n in range(1, 6)]
    (conv,) = await all_rows(services, Conversation)
    assert (conv.state, conv.report_id, conv.sender) == ("rating", report.id, "telegram:1001")
    assert len(await all_rows(services, CentralStatusEvent)) == 3


async def test_rejected_tells_the_reason_and_asks_no_rating(client: Any) -> None:
    services = client.app[SERVICES]
    await seed_report(services, 1, status="forwarded", confirm=False)
    body = event("rejected", "ev-9", note="Không thuộc thẩm quyền của tỉnh.")
    assert (await post(client, body)).status == 200
    assert await notify_texts(services) == [
        ("telegram:1001", "Phản ánh PA-2611-000001 không được tiếp nhận: "
                          "Không thuộc thẩm quyền của tỉnh.")]
    assert await all_rows(services, Conversation) == []


async def test_open_draft_is_not_hijacked_by_the_rating(client: Any) -> None:
    services = client.app[SERVICES]
    report = await seed_report(services, 1, status="forwarded", confirm=False)
    async with services.sessions() as session:
        draft = Report(channel="telegram", citizen_id=report.citizen_id, sender=report.sender,
                       status="draft", text="Cây đổ")
        session.add(draft)
        await session.flush()
        session.add(Conversation(sender=report.sender, channel="telegram",
                                 citizen_id=report.citizen_id, report_id=draft.id,
                                 state="collecting"))
        await session.commit()
    assert (await post(client, event("resolved", "ev-2"))).status == 200
    (conv,) = await all_rows(services, Conversation)
    assert (conv.state, conv.report_id) == ("collecting", draft.id)
    assert len(await notify_texts(services)) == 1  # the resolution, no rating question


async def test_subscribers_hear_on_their_latest_identity(client: Any) -> None:
    services = client.app[SERVICES]
    async with services.sessions() as session:
        other = Citizen(display_name="Trần Thị Bình")
        session.add(other)
        await session.flush()
        old = utcnow().replace(year=2025)
        session.add(Identity(urn="zalo:777", channel="zalo", citizen_id=other.id,
                             last_inbound_at=old))
        session.add(Identity(urn="facebook:888", channel="facebook", citizen_id=other.id,
                             last_inbound_at=utcnow()))
        session.add(Identity(urn="sms-never", channel="sms", citizen_id=other.id))
        await session.commit()
    await seed_report(services, 1, status="forwarded", confirm=False,
                      flags=[f"subscriber:{other.id}", "subscriber:1", "subscriber:x"])
    assert (await post(client, event())).status == 200
    assert [r for r, _ in await notify_texts(services)] == ["telegram:1001", "facebook:888"]


# --- polling the Open311 endpoint ------------------------------------------------------------

@pytest.mark.parametrize(("item", "expected"), [
    ({"status": "open", "requested_datetime": "a", "updated_datetime": "a"}, None),
    ({"status": "open", "status_notes": "Đã phân công"}, "in_progress"),
    ({"status": "open", "requested_datetime": "a", "updated_datetime": "b"}, "in_progress"),
    ({"status": "closed"}, "resolved"),
    ({"status": "rejected"}, "rejected"),
])
def test_open311_status_mapping(item: dict[str, Any], expected: str | None) -> None:
    assert open311_status(item) == expected


async def test_polling_open311(settings_factory: Any, aiohttp_server: Any) -> None:
    central = FakeCentral()
    server = await aiohttp_server(central.app())
    services = make_services(settings_factory(
        forward_sink="open311", forward_url=str(server.make_url("/open311")),
        forward_api_key=API_KEY))
    await seed_report(services, 1)
    forwarder = Forwarder(services)
    try:
        await forwarder.run_until_idle()
        assert await poll_central(services, forwarder.sink) == 0  # nothing happened yet
        central.set_status("5001", "open", "Đã giao đội điện chiếu sáng", "Công ty Chiếu sáng")
        assert await poll_central(services, forwarder.sink) == 1
        assert await poll_central(services, forwarder.sink) == 0
        central.set_status("5001", "closed", "Đã thay bóng đèn.")
        central.mode = "500"
        assert await poll_central(services, forwarder.sink) == 0  # down: try again later
        central.mode = "ok"
        assert await poll_central(services, forwarder.sink) == 1
    finally:
        await forwarder.close()
        await services.engine.dispose()
    (report,) = await all_rows(services, Report)
    assert (report.status, report.agency) == ("resolved", "Công ty Chiếu sáng")
    texts = [t for _, t in await notify_texts(services)]
    assert texts[0].endswith("đã được chuyển đến Sở Xây dựng.")
    assert texts[1] == "Phản ánh PA-2611-000001 đang được Công ty Chiếu sáng xử lý."
    assert texts[2] == "Phản ánh PA-2611-000001 đã được xử lý: Đã thay bóng đèn."


# --- reply window closed: SMS when the phone is known, else held --------------------------

class WindowClosed:
    """A chat channel whose 24 h window has closed."""

    name = "facebook"

    def __init__(self) -> None:
        self.tries: list[OutboundMessage] = []

    async def send(self, message: OutboundMessage) -> SendResult:
        self.tries.append(message)
        if len(self.tries) == 1:
            raise SendError("(#10) outside the allowed window", retryable=False,
                            window_closed=True)
        return SendResult("mid.ok")


class Recorder:
    """An SMS channel that records what it sends."""

    name = "sms"

    def __init__(self) -> None:
        self.sent: list[OutboundMessage] = []

    async def send(self, message: OutboundMessage) -> SendResult:
        self.sent.append(message)
        return SendResult(f"SM{len(self.sent)}")


@pytest.mark.parametrize("phone", ["+84905123456", None])
async def test_window_closed_goes_by_sms_or_waits(settings_factory: Any,
                                                  phone: str | None) -> None:
    services = make_services(settings_factory())
    facebook, sms = WindowClosed(), Recorder()
    services.channels.update(facebook=facebook, sms=sms)  # type: ignore[dict-item]
    await seed_report(services, 1, channel="facebook", status="forwarded", confirm=False,
                      phone=phone)

    async with services.sessions() as session:
        (report,) = (await session.exec(select(Report))).all()
        assert await services.lifecycle.apply_central(session, report, "in_progress",
                                                          agency="Sở Xây dựng")
        await session.commit()
    sender = OutboxSender(services)
    while await sender.run_once():
        pass
    rows = {o.channel: o for o in await all_rows(services, Outbox)}
    if phone:
        assert rows["facebook"].status == "fallback"
        assert [m.recipient for m in sms.sent] == ["tel:+84905123456"]
        assert sms.sent[0].text == "Phản ánh PA-2611-000001 đang được Sở Xây dựng xử lý."
    else:
        assert rows["facebook"].status == "held" and sms.sent == []
        async with services.sessions() as session:  # the citizen writes again
            assert await release_held(services, session, "facebook:1001") == 1
            await session.commit()
        while await sender.run_once():
            pass
        (row,) = await all_rows(services, Outbox)
        assert row.status == "sent" and len(facebook.tries) == 2
    await services.engine.dispose()


async def test_resolution_without_a_note(client: Any) -> None:
    services = client.app[SERVICES]
    await seed_report(services, 1, status="in_progress", confirm=False)
    assert (await post(client, event("resolved", "ev-5"))).status == 200
    texts = [t for _, t in await notify_texts(services)]
    assert texts[0] == "Phản ánh PA-2611-000001 đã được xử lý."


async def test_open311_filed_report_is_told_on_the_citizens_chat(client: Any) -> None:
    services = client.app[SERVICES]
    report = await seed_report(services, 1, channel="open311", sender="open311:dev-1",
                               status="forwarded", confirm=False)
    async with services.sessions() as session:
        session.add(Identity(urn="zalo:4242", channel="zalo", citizen_id=report.citizen_id,
                             last_inbound_at=utcnow()))
        await session.commit()
    assert (await post(client, event("resolved", "ev-7", note="Xong."))).status == 200
    assert await notify_texts(services) == [
        ("zalo:4242", "Phản ánh PA-2611-000001 đã được xử lý: Xong.")]
    assert await all_rows(services, Conversation) == []  # no rating question there


async def test_event_dedup_on_both_databases(settings_factory: Any, db_url: str) -> None:
    from gateway.web.central import apply_event

    try:
        from tests.fakes.central import clean_central_tables
    except ImportError:
        from fakes.central import clean_central_tables  # type: ignore[no-redef]
    clean_central_tables(db_url)
    services = make_services(settings_factory(database_url=db_url))
    try:
        await seed_report(services, 1, status="forwarded", confirm=False)
        first = event("in_progress", "ev-42")
        assert await apply_event(services, first, "callback") == "applied"
        assert await apply_event(services, first, "callback") == "duplicate"
        assert await apply_event(services, event("in_progress", "ev-43"), "poll") == "stale"
        assert await apply_event(services, {**first, "code": "PA-2611-000404",
                                            "event_id": "ev-44"}, "callback") == "unknown"
        events = await all_rows(services, CentralStatusEvent)
        assert sorted(e.event_id for e in events) == ["ev-42", "ev-43"]
    finally:
        await services.engine.dispose()
