"""Citizens who chat through the real webhook routes of each channel (web chat, Telegram, SMS,
Zalo), for the scripted-conversation tests: the same dialog serves them all.

Each driver posts signed provider payloads and reads what the centre answered from the outbox
rows addressed to it (the text and the buttons' payloads, as the channel would send them).
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from multidict import MultiDict
from sqlmodel import select

from channels.telegram import SECRET_HEADER
from channels.twilio_common import sign
from channels.web import session_token
from gateway.keys import SERVICES
from store.models import DutyAlert, Report
from store.repos import console as console_repo
from tests.fakes.twilio_api import ACCOUNT_SID, AUTH_TOKEN, NUMBER, PUBLIC
from tests.fakes.zalo_api import APP_ID, APP_SECRET

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4
TG_SECRET = "script-Secret_1"
TG_TOKEN = "123456:TEST-token"
ZALO_OA_SECRET = "test-oa-secret-key"
ZALO_OA_ID = "388613280878808645"
CHANNELS = ("web", "telegram", "sms", "zalo")


def settings_for(kind: str, settings_factory: Any, **extra: Any) -> Any:
    """Settings with `kind` enabled (review policy `all`: nothing is auto-confirmed)."""
    values: dict[str, Any] = {"review_policy": "all", **extra}
    if kind == "telegram":
        values.update(telegram_token=TG_TOKEN, telegram_secret=TG_SECRET,
                      telegram_api_base="http://127.0.0.1:9")
    elif kind == "sms":
        values.update(twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN,
                      twilio_number=NUMBER, twilio_api_base="http://127.0.0.1:9",
                      public_base_url=PUBLIC)
    elif kind == "zalo":
        values.update(zalo_app_id=APP_ID, zalo_app_secret=APP_SECRET,
                      zalo_oa_secret=ZALO_OA_SECRET, zalo_access_token="access-1",
                      zalo_refresh_token="refresh-1", zalo_api_base="http://127.0.0.1:9")
    return settings_factory(**values)


class Citizen:
    """One citizen on one channel; `say`, `press`, `location`, `photo`; `replies()`."""

    numbered = False  # buttons arrive as numbered lines: a press is typing the digit

    def __init__(self, client: Any, urn: str) -> None:
        self.client, self.urn, self.n = client, urn, 0
        self.app = client.app

    def _next(self) -> int:
        self.n += 1
        return self.n

    async def say(self, text: str) -> None:
        """Send a text message."""
        raise NotImplementedError

    async def press(self, payload: str) -> None:
        """Press the button with `payload` of the last reply (or type its number)."""
        if not self.numbered:
            await self._postback(payload)
            return
        last = [r for r in await self.replies() if r["buttons"]][-1]
        await self.say(str(last["buttons"].index(payload) + 1))

    async def _postback(self, payload: str) -> None:
        raise NotImplementedError

    async def location(self, lat: float, lon: float) -> None:
        """Share a location."""
        raise NotImplementedError

    async def photo(self) -> None:
        """Send a photo."""
        raise NotImplementedError

    async def replies(self) -> list[dict[str, Any]]:
        """Everything the centre answered so far, in order."""
        async with self.app[SERVICES].sessions() as s:
            rows = await console_repo.replies_to(s, self.urn, 0, ("reply", "notify"), 500)
        return [{"text": r.payload.get("text", ""),
                 "buttons": [b["payload"] for b in r.payload.get("buttons", [])]} for r in rows]

    async def texts(self) -> list[str]:
        """The texts of `replies()`."""
        return [r["text"] for r in await self.replies()]

    async def reports(self) -> list[Report]:
        """Every report of this citizen's address, oldest first."""
        async with self.app[SERVICES].sessions() as s:
            stmt = select(Report).where(Report.sender == self.urn).order_by(Report.id)
            return list((await s.exec(stmt)).all())

    async def alerts(self) -> list[DutyAlert]:
        """Duty alerts raised for this citizen's reports."""
        ids = [r.id for r in await self.reports()]
        async with self.app[SERVICES].sessions() as s:
            rows = (await s.exec(select(DutyAlert).order_by(DutyAlert.id))).all()
        return [a for a in rows if a.report_id in ids]


class WebCitizen(Citizen):
    """The web chat page's protocol."""

    def __init__(self, client: Any, sid: str = "conversation_session_01") -> None:
        super().__init__(client, f"web:{sid}")
        self.auth = {"sid": sid, "token": session_token("test-session-secret", sid)}

    async def _post(self, **fields: Any) -> None:
        body = {**self.auth, "id": f"m{self._next()}", **fields}
        resp = await self.client.post("/webhooks/web", data=json.dumps(body))
        assert resp.status == 200, await resp.text()

    async def say(self, text: str) -> None:
        await self._post(text=text)

    async def _postback(self, payload: str) -> None:
        await self._post(text="", postback=payload)

    async def location(self, lat: float, lon: float) -> None:
        await self._post(text="", location={"lat": lat, "lon": lon})

    async def photo(self) -> None:
        up = await self.client.post("/chat/upload", data=JPEG, params=self.auth,
                                    headers={"Content-Type": "image/jpeg"})
        assert up.status == 200, await up.text()
        await self._post(text="", attachments=[{"url": (await up.json())["url"]}])


class TelegramCitizen(Citizen):
    """Bot API updates posted to the webhook with the secret header."""

    CHAT = 515151

    def __init__(self, client: Any) -> None:
        super().__init__(client, f"telegram:{self.CHAT}")

    async def _update(self, **fields: Any) -> None:
        n = self._next() + 5000
        user = {"id": self.CHAT, "is_bot": False, "first_name": "Hoa"}
        if "callback_query" in fields:
            update = {"update_id": n, **fields}
        else:
            update = {"update_id": n, "message": {
                "message_id": n, "from": user, "date": int(time.time()),
                "chat": {"id": self.CHAT, "type": "private"}, **fields}}
        resp = await self.client.post("/webhooks/telegram", data=json.dumps(update),
                                      headers={SECRET_HEADER: TG_SECRET})
        assert resp.status == 200

    async def say(self, text: str) -> None:
        await self._update(text=text)

    async def _postback(self, payload: str) -> None:
        n = self.n + 7000
        await self._update(callback_query={
            "id": f"cb{n}", "chat_instance": "ci", "data": payload,
            "from": {"id": self.CHAT, "is_bot": False, "first_name": "Hoa"},
            "message": {"message_id": 1, "date": int(time.time()),
                        "chat": {"id": self.CHAT, "type": "private"}, "text": "…"}})

    async def location(self, lat: float, lon: float) -> None:
        await self._update(location={"latitude": lat, "longitude": lon})


class SmsCitizen(Citizen):
    """Twilio SMS webhooks, signed; the answers are plain text with numbered options."""

    numbered = True
    PHONE = "+84914000222"

    def __init__(self, client: Any) -> None:
        super().__init__(client, f"tel:{self.PHONE}")

    async def say(self, text: str) -> None:
        params = {"AccountSid": ACCOUNT_SID, "MessageSid": f"SM{self._next():032x}",
                  "From": self.PHONE, "To": NUMBER, "Body": text, "NumMedia": "0"}
        signature = sign(AUTH_TOKEN, f"{PUBLIC}/webhooks/twilio/sms", MultiDict(params))
        resp = await self.client.post("/webhooks/twilio/sms", data=params,
                                      headers={"X-Twilio-Signature": signature})
        assert resp.status == 200


class ZaloCitizen(Citizen):
    """Zalo OA webhooks, signed with the OA secret; buttons arrive numbered."""

    numbered = True
    UID = "2468458835296197922"

    def __init__(self, client: Any) -> None:
        super().__init__(client, f"zalo:{self.UID}")

    async def _event(self, event: str, message: dict[str, Any]) -> None:
        ts = str(int(time.time() * 1000) + self._next())
        body = json.dumps({"app_id": APP_ID, "sender": {"id": self.UID},
                           "recipient": {"id": ZALO_OA_ID}, "event_name": event,
                           "message": {"msg_id": f"zm{ts}", **message}, "timestamp": ts},
                          ensure_ascii=False, separators=(",", ":")).encode()
        mac = hashlib.sha256((APP_ID + body.decode() + ts + ZALO_OA_SECRET).encode()).hexdigest()
        resp = await self.client.post("/webhooks/zalo", data=body, headers={
            "Content-Type": "application/json", "X-ZEvent-Signature": f"mac={mac}"})
        assert resp.status == 200, await resp.text()

    async def say(self, text: str) -> None:
        await self._event("user_send_text", {"text": text})

    async def location(self, lat: float, lon: float) -> None:
        await self._event("user_send_location", {"text": "", "attachments": [
            {"type": "location", "payload": {"coordinates": {
                "latitude": str(lat), "longitude": str(lon)}}}]})


async def citizen(kind: str, settings_factory: Any, gateway_client: Any,
                  **extra: Any) -> Citizen:
    """A citizen on `kind` in a fresh gateway."""
    client = await gateway_client(settings_for(kind, settings_factory, **extra))
    return {"web": WebCitizen, "telegram": TelegramCitizen, "sms": SmsCitizen,
            "zalo": ZaloCitizen}[kind](client)
