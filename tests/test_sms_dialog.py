"""The dialog over SMS: short answers, one question at most, status queries by text message.

Inbound SMS are posted signed to the real webhook route; the replies are read from what the
fake Twilio REST API received.
"""

from __future__ import annotations

import re
from typing import Any

from multidict import MultiDict
from sqlmodel import select

from channels.twilio_common import sign
from gateway.keys import SERVICES
from store.models import Report
from tests.fakes.twilio_api import ACCOUNT_SID, AUTH_TOKEN, NUMBER, PUBLIC, FakeTwilio

CITIZEN = "+84914000111"


async def _sms(client: Any, n: int, body: str) -> None:
    params = {"AccountSid": ACCOUNT_SID, "MessageSid": f"SM{n:032x}", "From": CITIZEN,
              "To": NUMBER, "Body": body, "NumMedia": "0"}
    signature = sign(AUTH_TOKEN, f"{PUBLIC}/webhooks/twilio/sms", MultiDict(params))
    resp = await client.post("/webhooks/twilio/sms", data=params,
                             headers={"X-Twilio-Signature": signature})
    assert resp.status == 200
    assert "<Response" in await resp.text()


async def test_sms_conversation(aiohttp_server, settings_factory, gateway_client,
                                drain_app) -> None:
    fake = FakeTwilio()
    server = await aiohttp_server(fake.app())
    client = await gateway_client(settings_factory(
        twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN, twilio_number=NUMBER,
        twilio_api_base=str(server.make_url("")).rstrip("/"), public_base_url=PUBLIC,
        review_policy="all"))

    await _sms(client, 1, "Mat nuoc sinh hoat 2 ngay nay roi")
    await drain_app(client.app)
    question = fake.sends[-1]
    assert question["To"] == CITIZEN and "ở đâu" in question["Body"]
    assert len(question["Body"]) <= 70  # one UCS-2 segment

    await _sms(client, 2, "so 12 kiet 4 Phan Dinh Phung, phuong Vinh Ninh")
    await drain_app(client.app)
    done = fake.sends[-1]["Body"]
    code = re.search(r"PA-\d{4}-\d{6}", done).group(0)
    assert len(done) <= 70

    async with client.app[SERVICES].sessions() as s:
        report = (await s.exec(select(Report))).one()
    assert report.code == code and report.sector == "cap_nuoc"
    assert "Phan Dinh Phung" in report.text

    await _sms(client, 3, f"TT {code}")
    await drain_app(client.app)
    assert code in fake.sends[-1]["Body"]
    # A redelivered SMS (Twilio retries on timeouts) creates nothing new.
    await _sms(client, 3, f"TT {code}")
    await drain_app(client.app)
    assert len([m for m in fake.sends if not m.get("failed")]) == 3
