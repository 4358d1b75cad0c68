"""The operator console: queue, report page, every action with its audit row, dashboard, CSV,
keyword suggestions, the identity firewall and escaping of citizen text."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from console_support import (
    actions,
    add_operator,
    get_report,
    login,
    make_report,
    session_csrf,
)
from sqlmodel import select

from gateway.keys import SERVICES
from store.models import Outbox, ReportHistory

LIGHT = "Đèn đường không sáng mấy hôm nay rồi, tối đi lại rất nguy hiểm"
DRAIN = "Cống thoát nước bị nghẹt, nước tràn lên mặt đường Lê Lợi"
TRASH = "Rác thải đổ bừa bãi đầu hẻm 45 Trần Phú, bốc mùi hôi thối"


async def console(settings_factory, gateway_client, role: str = "operator", **overrides: Any):
    """A client logged in as `role`, on review_policy=all (everything waits in the queue)."""
    client = await gateway_client(settings_factory(review_policy="all", **overrides))
    await add_operator(client.app, role, role)
    resp = await login(client, role)
    assert resp.status == 303, await resp.text()
    return client, await session_csrf(client)


async def post(client: Any, path: str, csrf: str, **data: str) -> Any:
    return await client.post(path, data={"csrf": csrf, **data}, allow_redirects=False)


async def outbox(app: Any) -> list[Outbox]:
    async with app[SERVICES].sessions() as s:
        return list((await s.exec(select(Outbox).order_by(Outbox.id))).all())  # type: ignore[arg-type]


async def test_queue_lists_submitted_reports_oldest_first(settings_factory,
                                                          gateway_client) -> None:
    client, _ = await console(settings_factory, gateway_client, console_sla_minutes=15)
    app = client.app
    new = await make_report(app, LIGHT, minutes_ago=2)
    old = await make_report(app, DRAIN, channel="zalo", minutes_ago=40)
    html = await (await client.get("/console/")).text()
    assert html.index(old.code) < html.index(new.code)
    assert "quá hạn 25 phút" in html  # 40 min waiting, SLA 15 min
    assert "còn 13 phút" in html or "còn 12 phút" in html
    assert 'class="ch ch-zalo"' in html
    # Filters: by channel, by sector; the fragment keeps them.
    only_zalo = await (await client.get("/console/queue/rows?channel=zalo")).text()
    assert old.code in only_zalo and new.code not in only_zalo
    trash = await make_report(app, TRASH, minutes_ago=1)
    by_sector = await client.get(f"/console/queue/rows?sector={trash.sector}")
    assert trash.code in await by_sector.text()
    assert by_sector.headers["X-Queue-Total"] == "1"
    # Unknown filter values are ignored rather than failing.
    assert (await client.get("/console/?channel=nope&status=bogus")).status == 200


async def test_report_page_shows_messages_reasons_place_and_agency(
        settings_factory, gateway_client) -> None:
    client, _ = await console(settings_factory, gateway_client)
    report = await make_report(
        client.app, LIGHT, lat=16.4637, lon=107.5909,
        attachments=[{"kind": "audio", "url": "https://x/a.ogg", "path": "zalo/ab/a.ogg"},
                     {"kind": "image", "url": "https://x/p.jpg", "path": "zalo/ab/p.jpg"}])
    html = await (await client.get(f"/console/reports/{report.id}")).text()
    assert report.matches, "the classifier should explain itself"
    first = report.matches[0]
    assert f">{LIGHT[first['start']:first['end']]}</mark>" in html
    assert "16.46370, 107.59090" in html and "openstreetmap.org/?mlat=16.4637" in html
    assert '<audio controls preload="none" src="/media/zalo/ab/a.ogg">' in html
    assert 'src="/media/zalo/ab/p.jpg"' in html
    agency = client.app[SERVICES].classifier.route(report.sector, LIGHT).agency
    assert agency in html
    assert "CD-" in html  # the pseudonym agencies see
    assert (await client.get("/console/reports/99999")).status == 404


async def test_citizen_script_is_inert(settings_factory, gateway_client) -> None:
    client, _ = await console(settings_factory, gateway_client)
    evil = '<script>alert("x")</script> <img src=x onerror=alert(1)> đèn đường hỏng'
    report = await make_report(client.app, evil)
    for path in ("/console/", f"/console/reports/{report.id}"):
        html = await (await client.get(path)).text()
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html


async def test_confirm_queues_forwarding_and_is_audited(settings_factory,
                                                        gateway_client) -> None:
    client, csrf = await console(settings_factory, gateway_client)
    report = await make_report(client.app, DRAIN)
    resp = await post(client, f"/console/reports/{report.id}/confirm", csrf)
    assert resp.status == 303 and resp.headers["Location"].endswith("?done=confirmed")
    after = await get_report(client.app, report.id)
    assert after.status == "confirmed" and not after.needs_review
    assert [o.kind for o in await outbox(client.app)] == ["forward"]
    [audit] = await actions(client.app, "confirm")
    assert audit.report_id == report.id and audit.after["status"] == "confirmed"
    # A second confirm (another operator, stale page) changes nothing.
    again = await post(client, f"/console/reports/{report.id}/confirm", csrf)
    assert again.headers["Location"].endswith("?done=stale")
    assert len(await outbox(client.app)) == 1


async def test_change_sector_to_runner_up_then_confirm(settings_factory,
                                                       gateway_client) -> None:
    client, csrf = await console(settings_factory, gateway_client)
    report = await make_report(client.app, LIGHT)
    target = report.runner_up or "moi_truong"
    resp = await post(client, f"/console/reports/{report.id}/sector", csrf, sector=target)
    assert resp.status == 303
    after = await get_report(client.app, report.id)
    assert after.sector == target and after.status == "confirmed"
    clf = client.app[SERVICES].classifier
    assert after.agency == clf.route(target, LIGHT).agency
    [change] = await actions(client.app, "change_sector")
    assert change.before["sector"] == report.sector and change.after["sector"] == target
    assert [a.action for a in await actions(client.app) if a.report_id] == [
        "change_sector", "confirm"]
    bogus = await post(client, f"/console/reports/{report.id}/sector", csrf, sector="nope")
    assert bogus.headers["Location"].endswith("?done=invalid")


async def test_urgency_note_and_reply(settings_factory, gateway_client) -> None:
    client, csrf = await console(settings_factory, gateway_client)
    report = await make_report(client.app, TRASH)
    await post(client, f"/console/reports/{report.id}/urgency", csrf, urgent="1")
    assert (await get_report(client.app, report.id)).urgent is True
    await post(client, f"/console/reports/{report.id}/note", csrf, note="Đã gọi tổ dân phố")
    await post(client, f"/console/reports/{report.id}/reply", csrf,
               text="Cảm ơn bạn, chúng tôi đang kiểm tra")
    [msg] = await outbox(client.app)
    assert msg.kind == "notify" and msg.recipient == report.sender and msg.channel == "web"
    assert msg.payload["text"] == client.app[SERVICES].texts.get(
        "notify.operator_reply", code=report.code, note="Cảm ơn bạn, chúng tôi đang kiểm tra")
    assert "Cảm ơn bạn, chúng tôi đang kiểm tra" in msg.payload["text"]
    kinds = [a.action for a in await actions(client.app) if a.report_id]
    assert kinds == ["set_urgency", "note", "reply"]
    page = await (await client.get(f"/console/reports/{report.id}")).text()
    assert "Đã gọi tổ dân phố" in page and "Khẩn" in page
    # The citizen-visible history has no internal note.
    async with client.app[SERVICES].sessions() as s:
        notes = (await s.exec(select(ReportHistory.note))).all()
    assert "Đã gọi tổ dân phố" not in notes


async def test_reject_tells_the_citizen(settings_factory, gateway_client) -> None:
    client, csrf = await console(settings_factory, gateway_client)
    report = await make_report(client.app, "quảng cáo vay tiền nhanh lãi suất thấp")
    missing = await post(client, f"/console/reports/{report.id}/reject", csrf, kind="spam")
    assert missing.headers["Location"].endswith("?done=invalid")
    await post(client, f"/console/reports/{report.id}/reject", csrf, kind="spam",
               reason="Nội dung quảng cáo")
    after = await get_report(client.app, report.id)
    assert after.status == "rejected" and "spam" in after.flags
    [msg] = await outbox(client.app)
    assert msg.payload["text"] == (
        f"Phản ánh {report.code} không được tiếp nhận: Nội dung quảng cáo")
    async with client.app[SERVICES].sessions() as s:
        history = (await s.exec(select(ReportHistory).where(
            ReportHistory.report_id == report.id))).all()
    assert [(h.status, h.source) for h in history][-1] == ("rejected", "operator")


async def test_duplicates_are_suggested_and_merged(settings_factory, gateway_client) -> None:
    client, csrf = await console(settings_factory, gateway_client, duplicate_radius_m=200)
    app = client.app
    original = await make_report(app, DRAIN, lat=16.46370, lon=107.59090, minutes_ago=60)
    far = await make_report(app, "Ngập nước sau mưa ở khu chợ", lat=16.5, lon=107.7,
                            minutes_ago=50)
    similar_text = await make_report(app, DRAIN + " ạ", minutes_ago=30, channel="zalo")
    new = await make_report(app, "Nước cống tràn ra đường, hôi lắm",
                            lat=16.46420, lon=107.59100, channel="facebook")
    assert new.sector == original.sector
    page = await (await client.get(f"/console/reports/{new.id}")).text()
    assert f"Gộp vào {original.code}" in page and f"Gộp vào {far.code}" not in page
    text_page = await (await client.get(f"/console/reports/{similar_text.id}")).text()
    # No coordinates, same words: the trust gate links it at once, or the page offers it.
    linked = (await get_report(app, similar_text.id)).duplicate_of == original.id
    assert linked or f"Gộp vào {original.code}" in text_page
    resp = await post(client, f"/console/reports/{new.id}/merge", csrf,
                      original=str(original.id))
    assert resp.headers["Location"].endswith("?done=merged")
    merged = await get_report(app, new.id)
    assert merged.duplicate_of == original.id and merged.status == "merged"
    assert "duplicate" in merged.flags and merged.resolved_at is None  # not closed for them
    orig = await get_report(app, original.id)
    assert f"subscriber:{new.citizen_id}" in orig.flags
    [audit] = await actions(app, "merge")
    assert audit.before == {"status": "submitted", "duplicate_of": None}
    assert audit.after == {"status": "merged", "duplicate_of": original.id,
                           "original": original.code, "subscriber": new.citizen_id}
    async with app[SERVICES].sessions() as s:
        history = (await s.exec(select(ReportHistory).where(
            ReportHistory.report_id == new.id))).all()
    assert [(h.status, h.source, h.note) for h in history][-1] == (
        "merged", "operator", f"Trùng với phản ánh {original.code}")
    page = await (await client.get(f"/console/reports/{new.id}")).text()
    assert "Đã gộp trùng" in page
    # (the auto-linked report's citizen was told too: only the merged one's notice counts here)
    [msg] = [m for m in await outbox(app) if m.recipient == new.sender]
    assert original.code in msg.payload["text"]
    # Merging into itself or into a rejected report is refused.
    self_merge = await post(client, f"/console/reports/{far.id}/merge", csrf,
                            original=str(far.id))
    assert self_merge.headers["Location"].endswith("?done=invalid")
    into_rejected = await post(client, f"/console/reports/{far.id}/merge", csrf,
                               original=str(new.id))
    assert into_rejected.headers["Location"].endswith("?done=invalid")


async def test_operator_sees_masked_phone_until_reveal(settings_factory,
                                                       gateway_client) -> None:
    client, csrf = await console(settings_factory, gateway_client)
    report = await make_report(client.app, DRAIN, channel="sms", sender="tel:+84905123456",
                               phone="+84905123456")
    page = await (await client.get(f"/console/reports/{report.id}")).text()
    assert "+84905123456" not in page and "+84*****3456" in page
    shown = await post(client, f"/console/reports/{report.id}/reveal", csrf)
    assert shown.status == 200 and "+84905123456" in await shown.text()
    [audit] = await actions(client.app, "reveal_phone")
    assert audit.report_id == report.id


async def test_supervisor_sees_phone(settings_factory, gateway_client) -> None:
    client, _ = await console(settings_factory, gateway_client, role="supervisor")
    report = await make_report(client.app, DRAIN, channel="sms", sender="tel:+84905123456",
                               phone="+84905123456")
    page = await (await client.get(f"/console/reports/{report.id}")).text()
    assert "+84905123456" in page and 'id="reveal"' not in page


async def test_dashboard_charts_rates_and_csv(settings_factory, gateway_client) -> None:
    client, csrf = await console(settings_factory, gateway_client, console_sla_minutes=15)
    app = client.app
    a = await make_report(app, LIGHT, minutes_ago=30)
    b = await make_report(app, DRAIN, channel="zalo", minutes_ago=20)
    await make_report(app, TRASH, channel="sms", minutes_ago=5)
    await post(client, f"/console/reports/{a.id}/confirm", csrf)
    other = b.runner_up or "giao_thong"
    await post(client, f"/console/reports/{b.id}/sector", csrf, sector=other)
    page = await client.get("/console/dashboard")
    html = await page.text()
    assert page.status == 200 and "<svg" in html and "<rect" in html
    # a and b share the predicted sector: one of the two reviewed was overridden.
    assert 'id="accuracy"' in html and "<td>50%</td>" in html
    resp = await client.get("/console/dashboard.csv?days=7")
    assert resp.status == 200 and resp.content_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO((await resp.text()).lstrip("\ufeff"))))
    assert len(rows) == 3
    by_code = {r["code"]: r for r in rows}
    assert by_code[b.code]["overridden"] == "1" and by_code[b.code]["sector"] == other
    assert by_code[b.code]["predicted_sector"] == b.sector
    assert by_code[a.code]["minutes_to_confirm"] != ""
    assert "tel:" not in await resp.text()


async def test_every_page_on_sqlite_and_postgresql(db_url, settings_factory,
                                                   gateway_client) -> None:
    client, csrf = await console(settings_factory, gateway_client, role="admin",
                                 database_url=db_url)
    app = client.app
    first = await make_report(app, DRAIN, lat=16.4637, lon=107.5909, minutes_ago=30)
    second = await make_report(app, "Nước cống tràn ra đường, hôi lắm", lat=16.4642,
                               lon=107.5910)
    third = await make_report(app, LIGHT, minutes_ago=20)
    await post(client, f"/console/reports/{third.id}/sector", csrf, sector="dien")
    await post(client, f"/console/reports/{second.id}/merge", csrf, original=str(first.id))
    assert (await get_report(app, second.id)).duplicate_of == first.id
    for path in ("/console/", "/console/?status=all&channel=web", "/console/queue/rows",
                 f"/console/reports/{first.id}", f"/console/reports/{second.id}",
                 "/console/dashboard?days=30", "/console/dashboard.csv", "/console/keywords",
                 "/console/admin/operators", "/console/admin/audit?operator=admin",
                 "/console/admin/audit?action=merge&page=1"):
        resp = await client.get(path)
        assert resp.status == 200, path
    audit = await (await client.get("/console/admin/audit?action=merge")).text()
    assert second.code in audit


async def test_a_race_lost_on_the_outbox_key_is_reported_as_stale(settings_factory,
                                                                   gateway_client) -> None:
    client, csrf = await console(settings_factory, gateway_client)
    report = await make_report(client.app, DRAIN)
    # Another gateway process confirmed it a moment ago: its forward row holds the key.
    async with client.app[SERVICES].sessions() as s:
        s.add(Outbox(kind="forward", report_id=report.id, dedup_key=f"forward:{report.code}"))
        await s.commit()
    resp = await post(client, f"/console/reports/{report.id}/confirm", csrf)
    assert resp.status == 303 and resp.headers["Location"].endswith("?done=stale")
    assert (await get_report(client.app, report.id)).status == "submitted"
    assert await actions(client.app, "confirm") == []


def test_haversine_and_text_similarity() -> None:
    from gateway.domain.duplicates import haversine_m, text_similarity

    # Two points 0.0005° of latitude apart are about 55.6 m apart.
    assert haversine_m(16.4637, 107.5909, 16.4642, 107.5909) == pytest.approx(55.6, abs=0.5)
    assert haversine_m(16.4637, 107.5909, 16.4637, 107.5909) == 0
    assert text_similarity("Cống thoát nước bị nghẹt", "cong thoat nuoc bi nghet qua") >= 85
    assert text_similarity("Đèn đường hỏng", "Rác thải bốc mùi") < 85
    assert text_similarity("", "x") == 0


async def test_old_or_closed_reports_are_not_duplicate_candidates(settings_factory,
                                                                  gateway_client) -> None:
    client, csrf = await console(settings_factory, gateway_client, duplicate_window_hours=72)
    app = client.app
    stale = await make_report(app, DRAIN, lat=16.4637, lon=107.5909, minutes_ago=73 * 60)
    closed = await make_report(app, DRAIN, lat=16.4637, lon=107.5909, minutes_ago=60)
    await post(client, f"/console/reports/{closed.id}/reject", csrf, kind="out_of_scope",
               reason="Đã xử lý")
    new = await make_report(app, DRAIN, lat=16.4638, lon=107.5909)
    page = await (await client.get(f"/console/reports/{new.id}")).text()
    assert f"Gộp vào {stale.code}" not in page and f"Gộp vào {closed.code}" not in page
    assert "Không thấy phản ánh trùng" in page
