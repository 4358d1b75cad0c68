"""The console an IOC shift works from: search, assignment, urgent alerts, the thread, canned
replies, the map and ward, the readable audit log, Vietnamese-only labels."""

from __future__ import annotations

from typing import Any

from console_support import actions, add_operator, get_report, login, make_report, session_csrf
from sqlmodel import select

from gateway.keys import SERVICES
from gateway.web.console import labels
from gateway.web.console.search import phone_of
from gateway.web.console.settings_file import load as load_console
from store.models import DutyAlert, Outbox, utcnow

LIGHT = "Đèn đường không sáng mấy hôm nay rồi, tối đi lại rất nguy hiểm"
DRAIN = "Cống thoát nước bị nghẹt, nước tràn lên mặt đường Lê Lợi"
TRASH = "Rác thải đổ bừa bãi đầu hẻm 45 Trần Phú, bốc mùi hôi thối"


async def console(settings_factory: Any, gateway_client: Any, role: str = "operator",
                  **overrides: Any) -> tuple[Any, str]:
    client = await gateway_client(settings_factory(review_policy="all", **overrides))
    await add_operator(client.app, role, role)
    assert (await login(client, role)).status == 303
    return client, await session_csrf(client)


async def post(client: Any, path: str, csrf: str, **data: str) -> Any:
    return await client.post(path, data={"csrf": csrf, **data}, allow_redirects=False)


async def test_search_by_code_words_phone_and_filters(settings_factory, gateway_client) -> None:
    client, _ = await console(settings_factory, gateway_client, "supervisor")
    app = client.app
    light = await make_report(app, LIGHT, phone="0905123456", channel="sms",
                              sender="tel:+84905123456")
    drain = await make_report(app, DRAIN, channel="zalo")
    trash = await make_report(app, TRASH)

    async def found(query: str) -> str:
        resp = await client.get(f"/console/reports?{query}")
        assert resp.status == 200
        return await resp.text()

    html = await found(f"q={light.code}")
    assert light.code in html and drain.code not in html
    html = await found("q=cống+thoát")
    assert drain.code in html and light.code not in html and trash.code not in html
    # Operators type without diacritics (and in capitals): the folded copy finds them too.
    html = await found("q=CONG+THOAT")
    assert drain.code in html and light.code not in html and trash.code not in html
    html = await found("q=0905+123+456")
    assert light.code in html and drain.code not in html
    html = await found("channel=zalo")
    assert drain.code in html and trash.code not in html
    html = await found(f"sector={trash.sector}&status=submitted")
    assert trash.code in html and light.code not in html
    assert "Không tìm thấy" in await found("from=2001-01-01&to=2001-01-02")
    # Bad input is ignored, never a 500.
    for bad in ("from=hôm-qua", "page=abc", "status=<b>", "q=" + "x" * 5000, "page=-3"):
        assert (await client.get(f"/console/reports?{bad}")).status == 200


async def test_operators_do_not_search_by_phone(settings_factory, gateway_client) -> None:
    client, _ = await console(settings_factory, gateway_client, "operator")
    light = await make_report(client.app, LIGHT, phone="0905123456")
    html = await (await client.get("/console/reports?q=0905123456")).text()
    assert light.code not in html and "chỉ dành cho giám sát viên" in html
    assert phone_of("0905 123 456") == "+84905123456" and phone_of("12") is None


async def test_claim_assign_views_and_audit(settings_factory, gateway_client) -> None:
    client, csrf = await console(settings_factory, gateway_client, "supervisor")
    app = client.app
    other = await add_operator(app, "ca.hai")
    old = await make_report(app, DRAIN, minutes_ago=30)
    new = await make_report(app, TRASH, minutes_ago=5)
    resp = await post(client, f"/console/reports/{new.id}/claim", csrf)
    assert resp.headers["Location"].endswith("?done=claimed")
    mine = await (await client.get("/console/?view=mine")).text()
    assert new.code in mine and old.code not in mine
    free = await (await client.get("/console/queue/rows?view=unassigned")).text()
    assert old.code in free and new.code not in free
    await post(client, f"/console/reports/{old.id}/assign", csrf, operator=str(other))
    assert (await get_report(app, old.id)).assigned_to == other
    bad = await post(client, f"/console/reports/{old.id}/assign", csrf, operator="x")
    assert bad.headers["Location"].endswith("?done=invalid")
    await post(client, f"/console/reports/{new.id}/unassign", csrf)
    assert (await get_report(app, new.id)).assigned_to is None
    kinds = [(a.action, a.after.get("assigned_to")) for a in await actions(app)
             if a.action in ("claim", "assign", "unassign")]
    me = next(a.operator_id for a in await actions(app, "claim"))
    assert kinds == [("claim", me), ("assign", other), ("unassign", None)]


async def test_urgent_first_alerts_and_acknowledgement(settings_factory, gateway_client) -> None:
    client, csrf = await console(settings_factory, gateway_client)
    app = client.app
    calm = await make_report(app, TRASH, minutes_ago=60)
    fire = await make_report(app, "Cháy nhà ở kiệt 12 Nguyễn Huệ, khói nhiều", minutes_ago=1)
    async with app[SERVICES].sessions() as s:
        report = await s.get(type(fire), fire.id)
        report.urgent = True
        s.add(report)
        s.add(DutyAlert(report_id=fire.id, hazard="fire", numbers=["114"], channel="web"))
        await s.commit()
    html = await (await client.get("/console/")).text()
    assert html.index(fire.code) < html.index(calm.code)  # urgent first
    assert "Cháy, nổ" in html and 'data-reason="urgent"' in html
    data = await (await client.get("/console/alerts.json")).json()
    [alert] = data["alerts"]
    assert alert["code"] == fire.code and alert["hazard"] == "Cháy, nổ"
    assert [u["code"] for u in data["urgent"]] == [fire.code]
    resp = await post(client, f"/console/alerts/{alert['id']}/ack", csrf)
    assert resp.status == 303
    assert (await (await client.get("/console/alerts.json")).json())["alerts"] == []
    [ack] = await actions(app, "ack_alert")
    assert ack.report_id == fire.id and ack.operator_id is not None
    assert (await post(client, "/console/alerts/999/ack", csrf)).status == 404


async def test_thread_canned_reply_others_map_and_ward(settings_factory, gateway_client) -> None:
    client, csrf = await console(settings_factory, gateway_client)
    app = client.app
    first = await make_report(app, TRASH, sender="web:citizen-x", minutes_ago=90)
    report = await make_report(app, LIGHT, sender="web:citizen-x", lat=16.4601, lon=107.5951)
    await post(client, f"/console/reports/{report.id}/reply", csrf, text="Đã cử người kiểm tra")
    await post(client, f"/console/reports/{report.id}/reply", csrf, canned="need_photo")
    assert (await post(client, f"/console/reports/{report.id}/reply", csrf,
                       canned="nope")).headers["Location"].endswith("?done=invalid")
    async with app[SERVICES].sessions() as s:
        texts = [o.payload["text"] for o in (await s.exec(
            select(Outbox).where(Outbox.report_id == report.id))).all()]
    canned = app[SERVICES].texts.get("canned.need_photo", code=report.code)
    assert canned in texts and "anh/chị" in canned.lower() and "bạn" not in canned
    page = await (await client.get(f"/console/reports/{report.id}")).text()
    assert page.index(LIGHT) < page.index("Đã cử người kiểm tra") < page.index(canned[:30])
    assert f'href="/console/reports/{first.id}"' in page  # the citizen's other report
    assert 'id="map"' in page and 'data-lat="16.4601"' in page
    assert "/console/static/leaflet/leaflet.js" in page
    assert "Phường Thuận Hóa" in page and "Chưa có địa chỉ" not in page
    frag = await client.get(f"/console/reports/{report.id}/thread")
    assert frag.headers["X-Thread-Mark"] and "Đã cử người kiểm tra" in await frag.text()
    assert (await client.get("/console/static/leaflet/leaflet.js")).status == 200


async def test_readable_audit_and_no_english(settings_factory, gateway_client) -> None:
    client, csrf = await console(settings_factory, gateway_client, "admin")
    app = client.app
    report = await make_report(app, LIGHT)
    target = "an_toan_giao_thong" if report.sector != "an_toan_giao_thong" else "dien"
    await post(client, f"/console/reports/{report.id}/sector", csrf, sector=target)
    html = await (await client.get("/console/admin/audit")).text()
    assert "\\u" not in html and '{"sector"' not in html
    assert "Lĩnh vực" in html and "→" in html
    page = await (await client.get(f"/console/reports/{report.id}")).text()
    for english in ("abusive", ">duplicate", "bấm nút: confirm", ">confirm<"):
        assert english not in page
    assert labels.flag_label("abusive") == "Ngôn từ xúc phạm"
    assert labels.reason_label("flag:whatever") == "Đánh dấu khác"
    assert labels.postback_label("confirm") == "Xác nhận"
    # The score shown is the current sector's, after the change.
    changed = await get_report(app, report.id)
    assert changed.sector == target and changed.score != report.score


def test_ward_lookup_and_runner_up_labels() -> None:
    cfg = load_console()
    assert cfg.ward_at(16.4601, 107.5951).name == "Phường Thuận Hóa"
    assert cfg.ward_at(10.77, 106.70) is None and cfg.ward_at(None, None) is None
    assert cfg.canned and all(key for key, _ in cfg.canned)


async def test_ages_stop_when_a_report_leaves_the_queue(settings_factory, gateway_client) -> None:
    client, csrf = await console(settings_factory, gateway_client)
    report = await make_report(client.app, DRAIN, minutes_ago=120)
    await post(client, f"/console/reports/{report.id}/confirm", csrf)
    async with client.app[SERVICES].sessions() as s:
        r = await s.get(type(report), report.id)
        assert r.confirmed_at is not None and r.confirmed_at <= utcnow()
    html = await (await client.get("/console/queue/rows?status=confirmed")).text()
    assert "2 giờ" in html  # waited two hours, then stopped; not counting on
