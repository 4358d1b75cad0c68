"""Supervisors see forwards parked as dead letters and can put them back in the queue."""

from __future__ import annotations

from sqlmodel import select

from gateway.keys import SERVICES
from store.models import Outbox
from tests.console_support import actions, add_operator, login, make_report, session_csrf


async def test_dead_letters_are_shown_and_retried(settings_factory, gateway_client) -> None:
    client = await gateway_client(settings_factory(review_policy="all"))
    app = client.app
    report = await make_report(app, "Đèn đường hỏng ở kiệt 3 Lê Lợi")
    async with app[SERVICES].sessions() as s:
        row = Outbox(kind="forward", report_id=report.id, payload={"code": report.code},
                     dedup_key=f"forward:{report.code}", status="dead", attempts=8,
                     last_error="HTTP 500 from the central system")
        s.add(row)
        await s.commit()
        row_id = row.id
    await add_operator(app, "op", "operator")
    await add_operator(app, "sup", "supervisor")

    assert (await login(client, "op")).status in (302, 303)
    assert (await client.get("/console/deliveries")).status == 403
    await client.post("/console/logout", data={"csrf": await session_csrf(client)})

    assert (await login(client, "sup")).status in (302, 303)
    page = await client.get("/console/deliveries")
    html = await page.text()
    assert page.status == 200 and report.code in html and "HTTP 500" in html
    token = await session_csrf(client)
    resp = await client.post(f"/console/deliveries/{row_id}/retry", data={"csrf": token},
                             allow_redirects=False)
    assert resp.status == 303
    async with app[SERVICES].sessions() as s:
        again = (await s.exec(select(Outbox).where(Outbox.id == row_id))).one()
    assert again.status == "pending" and again.attempts == 0
    assert [a.after for a in await actions(app, "retry_forward")] == [{"outbox_id": row_id}]
    # A second press finds nothing dead any more.
    resp = await client.post(f"/console/deliveries/{row_id}/retry", data={"csrf": token},
                             allow_redirects=False)
    assert resp.headers["Location"].endswith("done=none")
