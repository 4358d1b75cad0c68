"""Hotline callers waiting to be called back: listed oldest first, closed once, audited."""

from __future__ import annotations

from typing import Any

from console_support import actions, add_operator, login, session_csrf

from gateway.keys import SERVICES
from store.repos import calls as calls_repo


async def _console(settings_factory: Any, gateway_client: Any, role: str) -> tuple[Any, str]:
    client = await gateway_client(settings_factory())
    await add_operator(client.app, role, role)
    assert (await login(client, role)).status == 303
    return client, await session_csrf(client)


async def test_callbacks_listed_masked_and_closed_once(settings_factory: Any,
                                                       gateway_client: Any) -> None:
    client, csrf = await _console(settings_factory, gateway_client, "operator")
    async with client.app[SERVICES].sessions() as s:
        first = await calls_repo.request_callback(s, "CA1", "tel:+84905111222", "after_hours")
        await calls_repo.request_callback(s, "CA2", "tel:+84905333444", "not_ready")
    page = await (await client.get("/console/callbacks")).text()
    assert page.index("Ngoài giờ làm việc") < page.index("Chưa nhận dạng kịp lời nói")
    assert "+84905111222" not in page and "Gọi lại" in page  # operators see it masked
    resp = await client.post(f"/console/callbacks/{first.id}/done",
                             data={"csrf": csrf, "note": "đã hẹn kiểm tra"},
                             allow_redirects=False)
    assert resp.headers["Location"].endswith("done=called")
    again = await client.post(f"/console/callbacks/{first.id}/done", data={"csrf": csrf},
                              allow_redirects=False)
    assert again.headers["Location"].endswith("done=none")
    [audit] = await actions(client.app, "called_back")
    assert audit.note == "đã hẹn kiểm tra" and audit.after["reason"] == "after_hours"
    forged = await client.post(f"/console/callbacks/{first.id}/done", data={"csrf": "x"},
                               allow_redirects=False)
    assert forged.status == 403
    bad = await client.post("/console/callbacks/99999/done", data={"csrf": csrf},
                            allow_redirects=False)
    assert bad.headers["Location"].endswith("done=none")


async def test_supervisors_see_the_whole_number(settings_factory: Any,
                                                gateway_client: Any) -> None:
    client, _ = await _console(settings_factory, gateway_client, "supervisor")
    async with client.app[SERVICES].sessions() as s:
        await calls_repo.request_callback(s, "CA9", "tel:+84905111222", "asked")
    assert "+84905111222" in await (await client.get("/console/callbacks")).text()
