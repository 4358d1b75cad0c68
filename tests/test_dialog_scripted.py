"""One scripted conversation, played on Telegram and on the web chat through the same dialog:
text → photo → location → confirm → tracking code → status query.

Telegram runs against the fake Bot API (tests/fakes/telegram_api.py): the test reads what the
citizen would see from the sendMessage calls the fake received. The web chat reads the replies
the page polls. Also: edits update the draft, abusive text is kept but flagged, and a shared
contact links the Telegram identity to the citizen's SMS identity.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from sqlmodel import select

from channels.telegram import SECRET_HEADER
from channels.web import session_token
from gateway.keys import SERVICES
from store.models import Citizen, Identity, Report
from tests.fakes.telegram_api import TOKEN, FakeTelegram

SECRET = "script-Secret_1"
CHAT = 424242
SID = "script_session_0001"
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4


def _tg_message(update_id: int, **fields: Any) -> dict[str, Any]:
    user = {"id": CHAT, "is_bot": False, "first_name": "Lan"}
    message = {"message_id": update_id, "from": user, "date": 1_790_000_000 + update_id,
               "chat": {"id": CHAT, "type": "private", "first_name": "Lan"}, **fields}
    return {"update_id": update_id, "message": message}


class TelegramCitizen:
    """Plays the citizen on Telegram and reads the bot's answers from the fake Bot API."""

    def __init__(self, client: Any, fake: FakeTelegram) -> None:
        self.client, self.fake, self.n = client, fake, 1000

    async def _post(self, update: dict[str, Any]) -> None:
        resp = await self.client.post("/webhooks/telegram", data=json.dumps(update),
                                      headers={SECRET_HEADER: SECRET})
        assert resp.status == 200

    def _next(self) -> int:
        self.n += 1
        return self.n

    async def say(self, text: str) -> None:
        await self._post(_tg_message(self._next(), text=text))

    async def edit(self, text: str) -> None:
        n = self._next()
        update = _tg_message(n, text=text)
        update["edited_message"] = update.pop("message")
        await self._post(update)

    async def photo(self) -> None:
        self.fake.add_file("photo-big", "photos/file_1.jpg", JPEG)
        await self._post(_tg_message(self._next(), photo=[
            {"file_id": "photo-small", "file_unique_id": "s", "width": 90, "height": 90,
             "file_size": 10},
            {"file_id": "photo-big", "file_unique_id": "b", "width": 800, "height": 600,
             "file_size": len(JPEG)}]))

    async def location(self, lat: float, lon: float) -> None:
        await self._post(_tg_message(self._next(), location={"latitude": lat, "longitude": lon}))

    async def press(self, payload: str) -> None:
        n = self._next()
        await self._post({"update_id": n, "callback_query": {
            "id": f"cb{n}", "chat_instance": "ci", "data": payload,
            "from": {"id": CHAT, "is_bot": False, "first_name": "Lan"},
            "message": {"message_id": 1, "date": 1_790_000_000,
                        "chat": {"id": CHAT, "type": "private"}, "text": "…"}}})

    async def share_contact(self, phone: str) -> None:
        await self._post(_tg_message(self._next(), contact={
            "phone_number": phone, "first_name": "Lan", "user_id": CHAT}))

    def seen(self) -> list[dict[str, Any]]:
        out = []
        for params in self.fake.sent():
            markup = params.get("reply_markup") or {}
            buttons = [b for row in markup.get("inline_keyboard", []) for b in row]
            buttons += [b for row in markup.get("keyboard", []) for b in row]
            out.append({"text": params["text"], "buttons": buttons})
        return out


class WebCitizen:
    """Plays the citizen in the web chat and reads what the page would poll."""

    def __init__(self, client: Any) -> None:
        self.client, self.n = client, 0
        self.auth = {"sid": SID, "token": session_token("test-session-secret", SID)}

    async def _post(self, **fields: Any) -> None:
        self.n += 1
        body = {**self.auth, "id": f"m{self.n}", **fields}
        resp = await self.client.post("/webhooks/web", data=json.dumps(body))
        assert resp.status == 200

    async def say(self, text: str) -> None:
        await self._post(text=text)

    async def photo(self) -> None:
        up = await self.client.post("/chat/upload", data=JPEG, params=self.auth,
                                    headers={"Content-Type": "image/jpeg"})
        await self._post(text="", attachments=[{"url": (await up.json())["url"]}])

    async def location(self, lat: float, lon: float) -> None:
        await self._post(text="", location={"lat": lat, "lon": lon})

    async def press(self, payload: str) -> None:
        await self._post(text="", postback=payload)

    async def seen_async(self) -> list[dict[str, Any]]:
        resp = await self.client.get("/chat/messages", params={**self.auth, "after": "0"})
        return [{"text": m["text"], "buttons": m["buttons"]}
                for m in (await resp.json())["messages"]]


@pytest.fixture
async def fake_bot(aiohttp_server: Any) -> FakeTelegram:
    state = FakeTelegram()
    server = await aiohttp_server(state.app())
    state.base = str(server.make_url("")).rstrip("/")  # type: ignore[attr-defined]
    return state


async def _citizen(kind: str, settings_factory: Any, gateway_client: Any,
                   fake_bot: FakeTelegram) -> tuple[Any, Any]:
    settings = settings_factory(telegram_token=TOKEN, telegram_secret=SECRET,
                                telegram_api_base=fake_bot.base, review_policy="all")
    client = await gateway_client(settings)
    return client, (TelegramCitizen(client, fake_bot) if kind == "telegram" else WebCitizen(client))


async def _seen(citizen: Any) -> list[dict[str, Any]]:
    if isinstance(citizen, WebCitizen):
        return await citizen.seen_async()
    return citizen.seen()


@pytest.mark.parametrize("kind", ["telegram", "web"])
async def test_scripted_conversation(kind, settings_factory, gateway_client, drain_app,
                                     fake_bot) -> None:
    client, citizen = await _citizen(kind, settings_factory, gateway_client, fake_bot)
    app = client.app

    await citizen.say("Cống thoát nước bị vỡ nắp, rất nguy hiểm cho xe máy")
    await drain_app(app)
    ask = (await _seen(citizen))[-1]
    assert "ở đâu" in ask["text"]
    assert any("vị trí" in (b.get("text") or b.get("title") or "") for b in ask["buttons"])

    await citizen.photo()
    await drain_app(app)
    await citizen.location(16.4698, 107.5796)
    await drain_app(app)
    summary = (await _seen(citizen))[-1]["text"]
    assert "Nội dung: Cống thoát nước bị vỡ nắp" in summary
    assert "vị trí anh/chị đã chia sẻ" in summary and "1 ảnh/ghi âm" in summary
    assert "16.46980" not in summary and "tệp" not in summary
    assert "Hạ tầng đô thị" in summary  # the sector the classifier suggests

    await citizen.press("confirm")
    await drain_app(app)
    done = (await _seen(citizen))[-1]["text"]
    code = re.search(r"PA-\d{4}-\d{6}", done).group(0)

    await citizen.say(f"/trangthai {code}")
    await drain_app(app)
    status = (await _seen(citizen))[-1]["text"]
    assert code in status and "Hạ tầng đô thị" in status

    async with app[SERVICES].sessions() as s:
        report = (await s.exec(select(Report))).one()
    assert report.code == code and report.status == "submitted"
    assert report.sector == "ha_tang_do_thi"
    (photo,) = report.attachments
    stored = app[SERVICES].settings.resolved_media_dir() / photo["path"]
    assert stored.read_bytes() == JPEG


async def test_edit_updates_the_draft_and_abuse_is_flagged(settings_factory, gateway_client,
                                                          drain_app, fake_bot) -> None:
    client, citizen = await _citizen("telegram", settings_factory, gateway_client, fake_bot)
    await citizen.say("Rac thai do dau hem 5 Nguyen Hue")
    await citizen.edit("Rác thải đổ đầu hẻm 7 Nguyễn Huệ, vcl bốc mùi")
    await drain_app(client.app)
    async with client.app[SERVICES].sessions() as s:
        report = (await s.exec(select(Report))).one()
        citizen_row = (await s.exec(select(Citizen))).one()
    assert report.text == "Rác thải đổ đầu hẻm 7 Nguyễn Huệ, vcl bốc mùi"
    assert "abusive" in report.flags and citizen_row.abuse_flags == 1
    # A polite request, never an accusation.
    assert any("lời lẽ lịch sự" in m["text"] for m in citizen.seen())
    assert not any("không phù hợp" in m["text"] for m in citizen.seen())


async def test_shared_contact_links_identities(settings_factory, gateway_client, drain_app,
                                               fake_bot) -> None:
    from store.repos import citizens as citizens_repo

    client, citizen = await _citizen("telegram", settings_factory, gateway_client, fake_bot)
    async with client.app[SERVICES].sessions() as s:
        await citizens_repo.resolve_citizen(s, "tel:+84905111222", "sms", phone="+84905111222")
        await s.commit()
    await citizen.say("/sdt")
    await drain_app(client.app)
    keyboard = citizen.seen()[-1]["buttons"]
    assert keyboard and keyboard[0].get("request_contact") is True
    await citizen.share_contact("0905 111 222")
    await drain_app(client.app)
    async with client.app[SERVICES].sessions() as s:
        identities = (await s.exec(select(Identity))).all()
    assert {i.urn for i in identities} == {f"telegram:{CHAT}", "tel:+84905111222"}
    assert len({i.citizen_id for i in identities}) == 1
    assert "+84905111222" in citizen.seen()[-1]["text"]
