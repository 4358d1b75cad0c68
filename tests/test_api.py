"""Integration API: bearer tokens, report listing and detail, message audit, OpenAPI, ops."""

from __future__ import annotations

import json

import pytest

from channels.web import session_token

AUTH = {"Authorization": "Bearer test-token"}
SID = "apitest_0123456789"


async def _report(client, drain_app, text: str, n: int) -> None:
    payload = {"sid": SID, "token": session_token("test-session-secret", SID), "id": f"m{n}",
               "text": text, "location": {"lat": 16.0, "lon": 108.0}}
    resp = await client.post("/webhooks/web", data=json.dumps(payload))
    assert resp.status == 200
    await drain_app(client.app)
    confirm = {**payload, "id": f"c{n}", "text": "", "postback": "confirm"}
    confirm.pop("location")
    await client.post("/webhooks/web", data=json.dumps(confirm))
    await drain_app(client.app)


UNAUTHORIZED = [
    ("no header", {}),
    ("wrong scheme", {"Authorization": "Basic dGVzdDp0ZXN0"}),
    ("wrong token", {"Authorization": "Bearer nope"}),
    ("empty bearer", {"Authorization": "Bearer "}),
]


@pytest.mark.parametrize(("case", "headers"), UNAUTHORIZED, ids=[u[0] for u in UNAUTHORIZED])
@pytest.mark.parametrize("path", ["/api/v1/reports", "/api/v1/reports/PA-2611-000001",
                                  "/api/v1/messages"])
async def test_api_needs_a_bearer_token(settings_factory, gateway_client, case, headers,
                                        path) -> None:
    client = await gateway_client(settings_factory())
    resp = await client.get(path, headers=headers)
    assert resp.status == 401, case
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_list_detail_and_messages(settings_factory, gateway_client, drain_app) -> None:
    client = await gateway_client(settings_factory(review_policy="none"))
    await _report(client, drain_app, "Mất điện cả khu phố từ sáng", 1)
    await _report(client, drain_app, "Rác thải ùn ứ ở chợ, bốc mùi hôi thối", 2)
    listing = await (await client.get("/api/v1/reports", headers=AUTH)).json()
    assert listing["total"] == 2 and len(listing["items"]) == 2
    codes = [i["code"] for i in listing["items"]]
    page = await (await client.get("/api/v1/reports", headers=AUTH,
                                   params={"limit": "1", "offset": "1"})).json()
    assert [i["code"] for i in page["items"]] == codes[1:]
    confirmed = await (await client.get("/api/v1/reports", headers=AUTH,
                                        params={"status": "confirmed"})).json()
    assert confirmed["total"] == 2  # review policy "none": the classifier's verdict stands
    detail = await (await client.get(f"/api/v1/reports/{codes[0]}", headers=AUTH)).json()
    assert detail["classification"][0]["sector"] == detail["sector"]
    assert [h["status"] for h in detail["history"]] == ["submitted", "confirmed"]
    assert detail["citizen"]["pseudonym"].startswith("CD-")
    msgs = await (await client.get("/api/v1/messages", headers=AUTH,
                                   params={"channel": "web", "external_id": f"{SID}:m1"})).json()
    (item,) = msgs["items"]
    assert item["text"] == "Mất điện cả khu phố từ sáng"
    assert item["location"] == {"lat": 16.0, "lon": 108.0}
    assert item["report_code"] in codes
    assert SID not in item["sender"]
    assert (await client.get("/api/v1/reports/PA-0000-000009", headers=AUTH)).status == 404
    assert (await client.get("/api/v1/reports", headers=AUTH,
                             params={"limit": "x"})).status == 400


async def test_openapi_describes_the_paths(settings_factory, gateway_client) -> None:
    client = await gateway_client(settings_factory())
    spec = await (await client.get("/api/v1/openapi.json")).json()
    assert spec["openapi"].startswith("3.")
    assert {"/reports", "/reports/{code}", "/messages"} <= set(spec["paths"])


async def test_ops_endpoints(settings_factory, gateway_client) -> None:
    client = await gateway_client(settings_factory())
    assert (await (await client.get("/healthz")).json()) == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["database"] == "ok"
    text = await (await client.get("/metrics")).text()
    assert "# TYPE paht_queue_depth gauge" in text


async def test_readyz_fails_and_webhooks_answer_503_without_a_database(
        settings_factory, gateway_client, tmp_path) -> None:
    settings = settings_factory()
    client = await gateway_client(settings)
    # Take the database away under the running app.
    db_file = settings.database_url.removeprefix("sqlite:///")
    from gateway.keys import ENGINE

    await client.app[ENGINE].dispose()
    import os

    os.rename(db_file, db_file + ".gone")
    os.mkdir(db_file)  # a directory where the file was: every connection fails
    ready = await client.get("/readyz")
    assert ready.status == 503
    payload = {"sid": SID, "token": session_token("test-session-secret", SID), "id": "x1",
               "text": "Đường ngập sâu"}
    resp = await client.post("/webhooks/web", data=json.dumps(payload))
    assert resp.status == 503 and resp.headers["Retry-After"]
