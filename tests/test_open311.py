"""Open311 GeoReport v2: services, requests (GET/POST), single request, formats, errors."""

from __future__ import annotations

from xml.etree import ElementTree as ET

import pytest
from sqlmodel import select

from gateway.keys import SERVICES
from store.models import Citizen, Report

KEY = "test-open311-key"


async def create(client, **form) -> tuple[int, object]:
    data = {"api_key": KEY, "service_code": "ha_tang_do_thi", "lat": "16.4637",
            "long": "107.5909", "description": "Đèn đường tắt cả tuần nay ở đường Lê Lợi",
            **form}
    resp = await client.post("/open311/v2/requests.json", data=data)
    return resp.status, await resp.json()


async def test_services_list_every_sector(settings_factory, gateway_client) -> None:
    client = await gateway_client(settings_factory())
    services = await (await client.get("/open311/v2/services.json")).json()
    codes = {s["service_code"] for s in services}
    assert {"trat_tu_do_thi", "ve_sinh_moi_truong", "ha_tang_giao_thong", "ha_tang_do_thi",
            "dien", "cap_nuoc", "vien_thong", "an_ninh_trat_tu", "an_toan_giao_thong",
            "y_te_attp", "giao_duc", "dat_dai", "thu_tuc_hanh_chinh", "khac"} <= codes
    assert all(s["metadata"] is False and s["type"] == "realtime" for s in services)
    xml = await (await client.get("/open311/v2/services.xml")).text()
    root = ET.fromstring(xml)
    assert root.tag == "services" and len(root.findall("service")) == len(services)
    definition = await (await client.get("/open311/v2/services/dien.json")).json()
    assert definition == {"service_code": "dien", "attributes": []}
    assert (await client.get("/open311/v2/services/nope.json")).status == 404


async def test_post_then_get_a_request(settings_factory, gateway_client) -> None:
    client = await gateway_client(settings_factory())
    status, body = await create(client, phone="0905 123 456", first_name="Lan",
                                last_name="Nguyễn", email="lan@example.vn")
    assert status == 200
    code = body[0]["service_request_id"]
    assert isinstance(code, str) and code.startswith("PA-")
    one = await (await client.get(f"/open311/v2/requests/{code}.json")).json()
    item = one[0]
    assert item["service_code"] == "ha_tang_do_thi"
    assert item["lat"] == pytest.approx(16.4637) and isinstance(item["long"], float)
    assert item["requested_datetime"].endswith("Z") and "T" in item["requested_datetime"]
    assert item["status"] == "open"
    text = str(one)
    assert "0905" not in text and "123456" not in text and "Lan" not in text
    # The phone identifies the citizen inside the gateway (operators see it).
    async with client.app[SERVICES].sessions() as s:
        citizen = (await s.exec(select(Citizen))).one()
    assert citizen.phone == "+84905123456"


async def test_query_filters_and_xml(settings_factory, gateway_client) -> None:
    client = await gateway_client(settings_factory())
    _, a = await create(client)
    _, b = await create(client, service_code="cap_nuoc", description="Mất nước hai ngày nay")
    async with client.app[SERVICES].sessions() as s:
        report = (await s.exec(select(Report).where(Report.code == b[0]["service_request_id"]))
                  ).one()
        report.status = "resolved"
        s.add(report)
        await s.commit()
    open_only = await (await client.get("/open311/v2/requests.json",
                                        params={"status": "open"})).json()
    assert [r["service_request_id"] for r in open_only] == [a[0]["service_request_id"]]
    water = await (await client.get("/open311/v2/requests.json",
                                    params={"service_code": "cap_nuoc"})).json()
    assert water[0]["status"] == "closed"
    window = await (await client.get("/open311/v2/requests.json", params={
        "start_date": "2001-01-01T00:00:00Z", "end_date": "2001-02-01T00:00:00Z"})).json()
    assert window == []
    xml = await (await client.get("/open311/v2/requests.xml")).text()
    root = ET.fromstring(xml)
    assert root.tag == "service_requests"
    assert {r.findtext("service_request_id") for r in root.findall("request")} == {
        a[0]["service_request_id"], b[0]["service_request_id"]}


ERRORS = [
    ("no api key", {"api_key": ""}, 403),
    ("wrong api key", {"api_key": "nope"}, 403),
    ("unknown service", {"service_code": "nope"}, 400),
    ("no location", {"lat": "", "long": ""}, 400),
    ("bad lat", {"lat": "north"}, 400),
    ("lat without long", {"long": ""}, 400),
    ("other jurisdiction", {"jurisdiction_id": "elsewhere.vn"}, 404),
]


@pytest.mark.parametrize(("case", "form", "status"), ERRORS, ids=[e[0] for e in ERRORS])
async def test_post_errors_use_the_spec_format(settings_factory, gateway_client, case, form,
                                               status) -> None:
    client = await gateway_client(settings_factory())
    got, body = await create(client, **form)
    assert got == status, case
    assert isinstance(body, list) and set(body[0]) == {"code", "description"}
    assert body[0]["code"] == status


async def test_get_errors(settings_factory, gateway_client) -> None:
    client = await gateway_client(settings_factory())
    missing = await client.get("/open311/v2/requests/PA-0000-000000.json")
    assert missing.status == 404
    assert (await missing.json())[0]["code"] == 404
    xml = await client.get("/open311/v2/requests/PA-0000-000000.xml")
    assert ET.fromstring(await xml.text()).tag == "errors"
    bad = await client.get("/open311/v2/requests.json", params={"start_date": "yesterday"})
    assert bad.status == 400
    assert (await client.get("/open311/v2/requests.csv")).status == 404
    address_only = await create(client, lat="", long="", address_string="52 Hùng Vương, Huế")
    assert address_only[0] == 200
