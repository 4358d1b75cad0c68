"""Issue 16: login throttling under parallel guesses, media access, Open311 input and feed,
the log masker, odd input that used to give a 500, and the worker's lease rules."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any
from xml.etree import ElementTree as ET

import pytest
from console_support import PASSWORD, add_operator, csrf_of, login

from gateway.domain.login_guard import LoginGuard
from gateway.keys import SERVICES
from gateway.ops.privacy import mask_public_text, scrub
from gateway.web.media_access import magic_ok, safe_file, signed_media_url
from store.models import EVENT_DONE, EVENT_PROCESSING, InboundEvent, OperatorAction, utcnow
from store.repos import events as events_repo

KEY = "open311-test-key"


# --- login -------------------------------------------------------------------------------------

def test_guard_counts_before_the_check_and_never_locks() -> None:
    now = [0.0]
    guard = LoginGuard(5, 900, 2, clock=lambda: now[0])
    assert [guard.admit("an", "1.2.3.4") for _ in range(40)].count(True) == 5
    assert guard.admit("an", "5.6.7.8")  # another IP is not locked out
    now[0] += 1.0
    assert guard.admit("an", "1.2.3.4")  # the 6th try after 1 s, then 2 s, 4 s …
    assert not guard.admit("an", "1.2.3.4")
    now[0] += 2.0
    assert guard.admit("an", "1.2.3.4")
    assert guard.delay_after(40) == 900


async def test_forty_parallel_wrong_passwords_check_at_most_five(settings_factory,
                                                                 gateway_client) -> None:
    client = await gateway_client(settings_factory(rate_limit_login_per_ip=0))
    await add_operator(client.app, "an")
    page = await client.get("/console/login")
    token = csrf_of(await page.text())

    async def guess() -> int:
        resp = await client.post("/console/login", data={
            "username": "an", "password": "sai", "csrf": token}, allow_redirects=False)
        return resp.status

    statuses = await asyncio.gather(*(guess() for _ in range(40)))
    assert set(statuses) <= {401, 429}
    async with client.app[SERVICES].sessions() as s:
        from sqlmodel import select

        checked = (await s.exec(select(OperatorAction).where(
            OperatorAction.action == "login_failed"))).all()
    assert len(checked) <= 5


async def test_login_rate_limit_per_ip_comes_before_hashing(settings_factory,
                                                            gateway_client) -> None:
    client = await gateway_client(settings_factory(rate_limit_login_per_ip=3))
    statuses = [(await login(client, f"nobody{i}", "x")).status for i in range(5)]
    assert statuses[:3] == [401] * 3 and statuses[3:] == [429, 429]


async def test_unknown_locked_and_wrong_answer_alike(settings_factory, gateway_client) -> None:
    client = await gateway_client(settings_factory(login_max_failures=1))
    await add_operator(client.app, "an")

    def body(text: str) -> str:
        import re

        return re.sub(r'value="[^"]*"', "", text)

    wrong = body(await (await login(client, "an", "sai")).text())
    delayed = body(await (await login(client, "an", PASSWORD)).text())
    unknown = body(await (await login(client, "khong-co", "sai")).text())
    assert wrong == delayed and unknown.replace("khong-co", "an") == wrong


# --- media -------------------------------------------------------------------------------------

def test_magic_bytes() -> None:
    assert magic_ok("image/png", b"\x89PNG\r\n\x1a\n....")
    assert not magic_ok("image/png", b"<html><script>")
    assert magic_ok("image/webp", b"RIFF\x00\x00\x00\x00WEBPVP8 ")
    assert not magic_ok("image/webp", b"RIFF\x00\x00\x00\x00AVI ")


def test_safe_file_refuses_odd_paths(tmp_path: Any) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b.jpg").write_bytes(b"x")
    assert safe_file(tmp_path, "a/b.jpg") is not None
    for rel in ["\x00", "a/\x00b", "../x", "a/../a/b.jpg", "/etc/passwd", "a\\b.jpg", ""]:
        assert safe_file(tmp_path, rel) is None


async def test_media_needs_a_signature_or_an_operator(settings_factory, gateway_client) -> None:
    settings = settings_factory()
    client = await gateway_client(settings)
    root = client.app[SERVICES].settings.resolved_media_dir()
    (root / "telegram" / "ab").mkdir(parents=True)
    (root / "telegram" / "ab" / "p.jpg").write_bytes(b"\xff\xd8\xffphoto")
    assert (await client.get("/media/telegram/ab/p.jpg")).status == 403
    assert (await client.get("/media/calls/%00")).status == 404
    url = signed_media_url(client.app[SERVICES].settings, "telegram/ab/p.jpg")
    ok = await client.get(url)
    assert ok.status == 200 and await ok.read() == b"\xff\xd8\xffphoto"
    assert ok.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in ok.headers["Content-Security-Policy"]
    expired = signed_media_url(client.app[SERVICES].settings, "telegram/ab/p.jpg",
                               ttl_hours=-5)
    assert (await client.get(expired)).status == 403
    assert (await client.get(url.replace("ab/p", "ab/q"))).status == 404
    await add_operator(client.app, "an")
    assert (await login(client, "an")).status == 303
    assert (await client.get("/media/telegram/ab/p.jpg")).status == 200


async def test_upload_of_html_as_png_is_refused(settings_factory, gateway_client) -> None:
    from channels.web import session_token

    settings = settings_factory()
    client = await gateway_client(settings)
    secret = client.app[SERVICES].settings.session_secret
    params = {"sid": "s1", "token": session_token(secret, "s1")}
    resp = await client.post("/chat/upload", data=b"<html><script>alert(1)</script>",
                             params=params, headers={"Content-Type": "image/png"})
    assert resp.status == 415


async def test_upload_quota_per_session(settings_factory, gateway_client) -> None:
    from channels.web import session_token

    client = await gateway_client(settings_factory(upload_max_per_session=2))
    secret = client.app[SERVICES].settings.session_secret
    params = {"sid": "s2", "token": session_token(secret, "s2")}
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 64
    statuses = [(await client.post("/chat/upload", data=png, params=params,
                                   headers={"Content-Type": "image/png"})).status
                for _ in range(3)]
    assert statuses == [200, 200, 429]


async def test_unreferenced_uploads_are_swept(settings_factory, gateway_client) -> None:
    from gateway.web.media_access import sweep_uploads

    client = await gateway_client(settings_factory())
    settings = client.app[SERVICES].settings
    folder = settings.resolved_media_dir() / "web" / "ab"
    folder.mkdir(parents=True)
    orphan, kept = folder / ("ab" + "1" * 30 + ".png"), folder / ("ab" + "2" * 30 + ".png")
    orphan.write_bytes(b"x")
    kept.write_bytes(b"y")
    async with client.app[SERVICES].sessions() as s:
        await events_repo.insert_events(s, [{
            "channel": "web", "external_id": "k1", "sender": "web:s",
            "received_at": utcnow(),
            "message": {"attachments": [{"url": f"/media/web/ab/{kept.name}"}]}}])
        await s.commit()
    assert await sweep_uploads(settings, client.app[SERVICES].sessions, older_than_s=-1) == 1
    assert not orphan.exists() and kept.exists()


# --- Open311 -----------------------------------------------------------------------------------

@pytest.fixture
async def o311(settings_factory, gateway_client) -> Any:
    return await gateway_client(settings_factory(open311_api_keys=KEY))


@pytest.mark.parametrize("lat,lon", [("10", "999"), ("inf", "106"), ("-1e308", "106"),
                                     ("nan", "nan"), ("16", "-inf"), ("91", "0")])
async def test_open311_refuses_bad_coordinates(o311, lat: str, lon: str) -> None:
    resp = await o311.post("/open311/v2/requests.json", data={
        "api_key": KEY, "service_code": "ha_tang_do_thi", "lat": lat, "long": lon,
        "description": "Rác thải ùn ứ"})
    assert resp.status == 400


async def test_open311_length_limits(o311) -> None:
    resp = await o311.post("/open311/v2/requests.json", data={
        "api_key": KEY, "service_code": "ha_tang_do_thi", "address_string": "x" * 900_000,
        "description": "Rác"})
    assert resp.status in (400, 413)


@pytest.mark.parametrize("key", ["khóa-sai", "\u00e9" * 10, "x" * 300])
async def test_open311_non_ascii_api_key_is_403(o311, key: str) -> None:
    resp = await o311.post("/open311/v2/requests.json", data={"api_key": key})
    assert resp.status == 403


async def test_public_feed_masks_personal_data_and_stays_valid(o311, drain_app) -> None:
    text = "Tôi là Nguyễn Văn An, số điện thoại 0905 123 456. Cống vỡ\x0b\x01 ở Lê Lợi"
    resp = await o311.post("/open311/v2/requests.json", data={
        "api_key": KEY, "service_code": "ha_tang_do_thi", "lat": "16.46", "long": "107.59",
        "description": text})
    assert resp.status == 200
    code = (await resp.json())[0]["service_request_id"]
    one = await o311.get(f"/open311/v2/requests/{code}.json")
    body = await one.text()
    assert "0905" not in body and "Nguyễn Văn An" not in body and "\\u000b" not in body
    xml = await (await o311.get("/open311/v2/requests.xml")).text()
    ET.fromstring(xml.split("?>", 1)[1])  # well-formed
    json.loads(await (await o311.get("/open311/v2/requests.json")).text())


def test_mask_public_text() -> None:
    out = mask_public_text("Tôi là Nguyễn Văn An, sđt 0905 123 456, an@x.vn, CCCD 012345678901")
    assert "Nguyễn" not in out and "0905" not in out and "an@x.vn" not in out
    assert "012345678901" not in out


# --- the log masker ----------------------------------------------------------------------------

@pytest.mark.parametrize("text,gone", [("sđt0912345678", "2345"), ("+84(912)345678", "912)"),
                                       ("From=%2B84912345678", "84912"),
                                       ("gọi 0905 123 456", "0905 123")])
def test_scrub_masks_phones(text: str, gone: str) -> None:
    assert gone not in scrub(text)


@pytest.mark.parametrize("text", ["127.0.0.1", "10.20.30.40 tried", "PA-2612-000206",
                                  "2026-01-18 18:58:35", "20260118 18:58:35"])
def test_scrub_leaves_ips_codes_and_times(text: str) -> None:
    assert scrub(text) == text


# --- odd input ---------------------------------------------------------------------------------

async def test_non_ascii_bearer_and_signature_are_4xx(settings_factory, gateway_client) -> None:
    client = await gateway_client(settings_factory(api_tokens="tok",
                                                   central_callback_secret="sec"))
    resp = await client.get("/api/v1/reports", headers={"Authorization": "Bearer tốk"})
    assert resp.status == 401
    resp = await client.post("/api/v1/central/status", data=b"{}",
                             headers={"X-PAHT-Signature": "sha256=chữ"})
    assert resp.status == 403


# --- worker lease ------------------------------------------------------------------------------

async def test_finish_and_fail_only_while_claimed_by_me(settings_factory, gateway_client) -> None:
    client = await gateway_client(settings_factory(run_workers=False))
    sessions = client.app[SERVICES].sessions
    async with sessions() as s:
        (event_id,) = await events_repo.insert_events(s, [{
            "channel": "sms", "external_id": "SM1", "sender": "tel:+84905123456",
            "received_at": utcnow(), "message": {}}])
        await s.commit()
    lease = timedelta(seconds=30)
    async with sessions() as s:
        assert [e.id for e in await events_repo.claim_events(s, "w1", 10, lease)] == [event_id]
    async with sessions() as s:  # w2 takes it over (w1's lease ran out) and finishes it
        await s.exec(InboundEvent.__table__.update().values(claimed_by="w2"))
        await events_repo.finish_events(s, [(event_id or 0, EVENT_DONE, None)], worker="w2")
        await s.commit()
    async with sessions() as s:  # w1's late failure must not reset the finished event
        assert await events_repo.fail_event(s, event_id or 0, "IntegrityError", 1, 5,
                                            worker="w1") == "not_mine"
        assert await events_repo.extend_lease(s, [event_id or 0], "w1", lease) == 0
    async with sessions() as s:
        event = await s.get(InboundEvent, event_id)
        assert event is not None and event.status == EVENT_DONE
        assert event.status != EVENT_PROCESSING
