"""The whole loop on Telegram (issue 8): a citizen reports through the webhook, an operator
confirms, the report is forwarded to the central system (the fake webhook endpoint), the
central system marks it in progress and then resolved through the signed callback, and the
citizen sees both messages and the rating question at the fake Bot API, presses "4", and the
rating is stored and forwarded as a second delivery."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from channels.telegram import SECRET_HEADER
from gateway.domain import reports
from gateway.keys import SERVICES
from gateway.workers.forwarder import Forwarder, queue_new_ratings
from store.forward import sign
from store.models import Report, ReportHistory

try:
    from tests.fakes.central import SECRET as CENTRAL_SECRET
    from tests.fakes.central import FakeCentral
    from tests.fakes.telegram_api import TOKEN, FakeTelegram
except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from fakes.central import SECRET as CENTRAL_SECRET  # type: ignore[no-redef]
    from fakes.central import FakeCentral  # type: ignore[no-redef]
    from fakes.telegram_api import TOKEN, FakeTelegram  # type: ignore[no-redef]

FIXTURES = Path(__file__).parent / "fixtures" / "telegram"
TG_SECRET = "test-Secret_123"
CALLBACK_SECRET = "central-callback-secret"
CHAT = 111222333


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


async def telegram_update(client: Any, update: dict[str, Any]) -> None:
    resp = await client.post("/webhooks/telegram", data=json.dumps(update).encode(),
                             headers={"Content-Type": "application/json",
                                      SECRET_HEADER: TG_SECRET})
    assert resp.status == 200


def press(update_id: int, data: str, markup: dict[str, Any]) -> dict[str, Any]:
    """The citizen presses an inline button: a callback_query update."""
    update = fixture("callback_query")
    update["update_id"] = update_id
    update["callback_query"]["id"] = f"cb-{update_id}"
    update["callback_query"]["data"] = data
    update["callback_query"]["message"]["reply_markup"] = markup
    return update


async def central_says(client: Any, status: str, event_id: str, code: str,
                       note: str | None = None) -> None:
    body = json.dumps({"code": code, "status": status, "note": note,
                       "agency": "Công ty Chiếu sáng đô thị", "event_id": event_id}).encode()
    resp = await client.post("/api/v1/central/status", data=body,
                             headers={"Content-Type": "application/json",
                                      "X-PAHT-Signature": sign(body, CALLBACK_SECRET)})
    assert resp.status == 200, await resp.text()


@pytest.fixture
async def servers(aiohttp_server: Any) -> Any:
    telegram, central = FakeTelegram(), FakeCentral()
    tg_server = await aiohttp_server(telegram.app())
    central_server = await aiohttp_server(central.app())
    telegram.base = str(tg_server.make_url("")).rstrip("/")  # type: ignore[attr-defined]
    central.url = str(central_server.make_url("/webhook"))  # type: ignore[attr-defined]
    yield telegram, central
    central.release()


async def test_report_forward_status_rating_loop(settings_factory: Any, gateway_client: Any,
                                                 drain_app: Any, servers: Any) -> None:
    telegram, central = servers
    client = await gateway_client(settings_factory(
        telegram_token=TOKEN, telegram_secret=TG_SECRET, telegram_api_base=telegram.base,
        review_policy="all", forward_sink="webhook", forward_url=central.url,
        forward_secret=CENTRAL_SECRET, central_callback_secret=CALLBACK_SECRET))
    services = client.app[SERVICES]

    # 1. the citizen reports and confirms on Telegram
    await telegram_update(client, fixture("text"))
    await drain_app(client.app)
    summary = telegram.sent()[-1]
    await telegram_update(client, press(900000100, "confirm", summary["reply_markup"]))
    await drain_app(client.app)
    code = re.search(r"PA-\d{4}-\d{6}", telegram.sent()[-1]["text"]).group(0)  # type: ignore[union-attr]

    # 2. the operator confirms (review_policy=all: nothing is forwarded before that)
    forwarder = Forwarder(services)
    assert await forwarder.run_until_idle() == 0
    async with services.sessions() as session:
        report = await reports.find_by_code(session, code)
        assert report is not None and report.status == "submitted"
        await reports.confirm(session, services, report)
        await session.commit()

    # 3. the forwarder delivers it; the citizen is told where it went
    assert await forwarder.run_until_idle() == 1
    assert central.keys() == [code]
    delivered = central.records[code].data
    assert delivered["description"] == "Đèn đường hỏng ở ngõ 12 Trần Phú"
    assert "Nguyễn" not in json.dumps(delivered, ensure_ascii=False)  # a pseudonym only
    await drain_app(client.app)
    assert telegram.sent()[-1]["text"].startswith(f"Phản ánh {code} đã được chuyển đến")

    # 4. the central system: in progress, then resolved (a replayed event changes nothing)
    before = len(telegram.sent())
    await central_says(client, "in_progress", "evt-100", code)
    await central_says(client, "in_progress", "evt-100", code)
    await drain_app(client.app)
    await central_says(client, "resolved", "evt-101", code, note="Đã thay bóng đèn mới.")
    await drain_app(client.app)
    progress, resolved, rate = telegram.sent()[before:]
    assert all(m["chat_id"] == CHAT for m in (progress, resolved, rate))
    assert progress["text"] == f"Phản ánh {code} đang được Công ty Chiếu sáng đô thị xử lý."
    assert resolved["text"] == f"Phản ánh {code} đã được xử lý: Đã thay bóng đèn mới."
    assert "đánh giá" in rate["text"]
    buttons = [b for row in rate["reply_markup"]["inline_keyboard"] for b in row]
    assert [(b["text"], b["callback_data"]) for b in buttons] == [
        (str(n), f"rate:{n}") for n in range(1, 6)]

    # 5. the citizen presses "4": stored, thanked, and forwarded as a second delivery
    await telegram_update(client, press(900000101, "rate:4", rate["reply_markup"]))
    await drain_app(client.app)
    assert telegram.sent()[-1]["text"] == "Trung tâm cảm ơn anh/chị đã đánh giá ạ!"
    # The dialog queued the rating's delivery with the rating itself; the catch-up job finds
    # nothing left to queue.
    assert await queue_new_ratings(services) == 0
    assert await forwarder.run_until_idle() == 1
    await forwarder.close()
    assert central.keys() == [code, f"{code}:rating"]
    assert central.records[f"{code}:rating"].data == {
        "type": "rating", "code": code, "rating": 4, "central_ref": "5001"}

    async with services.sessions() as session:
        report = await reports.find_by_code(session, code)
        assert report is not None
        assert (report.status, report.rating, report.central_ref) == ("resolved", 4, "5001")
        history = (await session.exec(select(ReportHistory).where(
            ReportHistory.report_id == report.id).order_by(ReportHistory.id))).all()
        assert [h.status for h in history] == [
            "submitted", "confirmed", "forwarded", "in_progress", "resolved", "resolved"]
        assert history[-1].note == "rating=4"
        assert len((await session.exec(select(Report))).all()) == 1
