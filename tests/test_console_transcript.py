"""An operator corrects what speech-to-text heard: kept, re-classified while waiting, audited."""

from __future__ import annotations

from typing import Any

from console_support import actions, add_operator, get_report, login, make_report, session_csrf

from gateway.keys import SERVICES
from store.models import ReportStatus


async def _console(settings_factory: Any, gateway_client: Any) -> tuple[Any, str]:
    client = await gateway_client(settings_factory(review_policy="all"))
    await add_operator(client.app, "lan", "operator")
    assert (await login(client, "lan")).status == 303
    return client, await session_csrf(client)


async def _heard(app: Any, heard: str) -> Any:
    report = await make_report(app, "", channel="voice", sender="tel:+84905111222")
    async with app[SERVICES].sessions() as s:
        row = await s.get(type(report), report.id)
        row.transcript, row.transcript_confidence = heard, 0.41
        s.add(row)
        await s.commit()
    return report


async def test_a_corrected_transcript_is_kept_and_reclassified(settings_factory: Any,
                                                               gateway_client: Any) -> None:
    client, csrf = await _console(settings_factory, gateway_client)
    report = await _heard(client.app, "phóng ở dưới chỗ đâm người")  # garbled: the wrong sector
    page = await (await client.get(f"/console/reports/{report.id}")).text()
    assert "độ tin cậy 41%" in page and 'id="correct-transcript"' in page
    said = "Đèn đường ở kiệt 52 Hùng Vương bị tắt cả tuần nay"
    resp = await client.post(f"/console/reports/{report.id}/transcript",
                             data={"csrf": csrf, "transcript": said}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].endswith("done=transcript")
    row = await get_report(client.app, report.id)
    assert row.transcript == said and row.transcript_machine == "phóng ở dưới chỗ đâm người"
    assert row.transcript_corrected_at is not None
    assert row.sector == "ha_tang_do_thi" and row.status == ReportStatus.SUBMITTED
    [audit] = [a for a in await actions(client.app) if a.action == "correct_transcript"]
    assert audit.before["transcript"] == "phóng ở dưới chỗ đâm người"
    assert audit.before["sector"] != "ha_tang_do_thi" == audit.after["sector"]
    # A second correction keeps the machine's words from the first time.
    await client.post(f"/console/reports/{report.id}/transcript",
                      data={"csrf": csrf, "transcript": said + " ạ"}, allow_redirects=False)
    assert (await get_report(client.app, report.id)).transcript_machine.startswith("phóng")


async def test_bad_corrections_change_nothing(settings_factory: Any, gateway_client: Any) -> None:
    client, csrf = await _console(settings_factory, gateway_client)
    report = await _heard(client.app, "đèn đường tắt")
    empty = await client.post(f"/console/reports/{report.id}/transcript",
                              data={"csrf": csrf, "transcript": ""}, allow_redirects=False)
    assert empty.headers["Location"].endswith("done=invalid")
    forged = await client.post(f"/console/reports/{report.id}/transcript",
                               data={"csrf": "forged", "transcript": "x"}, allow_redirects=False)
    assert forged.status == 403
    typed = await make_report(client.app, "Rác ở chợ Đông Ba")  # no recording to correct
    resp = await client.post(f"/console/reports/{typed.id}/transcript",
                             data={"csrf": csrf, "transcript": "x"}, allow_redirects=False)
    assert resp.headers["Location"].endswith("done=invalid")
    assert (await get_report(client.app, report.id)).transcript == "đèn đường tắt"
