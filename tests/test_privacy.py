"""Phone numbers and citizens' names never reach the logs in clear."""

from __future__ import annotations

import io
import json
import logging

import pytest

from channels.web import session_token
from gateway.ops.logs import _Formatter
from gateway.ops.privacy import mask_name, mask_phone, mask_urn, pseudonym, scrub


@pytest.mark.parametrize(("raw", "masked"), [
    ("+84905123456", "+84*****3456"),
    ("0905123456", "09****3456"),
    ("123", "***"),
    ("", ""),
])
def test_mask_phone(raw: str, masked: str) -> None:
    assert mask_phone(raw) == masked


def test_mask_urn_and_name() -> None:
    assert mask_urn("tel:+84905123456") == "tel:+84*****3456"
    assert "123456789" not in mask_urn("telegram:123456789")
    assert mask_name("Nguyễn Văn An") == "N. V. A."


def test_scrub_free_text() -> None:
    text = "gọi em số 0905 123 456 hoặc +84 914-000-111 nhé, nhà số 12"
    out = scrub(text)
    assert "0905 123 456" not in out and "914-000-111" not in out
    assert "nhà số 12" in out  # short numbers (house numbers) stay


def test_pseudonym_is_stable_and_secret_dependent() -> None:
    assert pseudonym(7, "a") == pseudonym(7, "a")
    assert pseudonym(7, "a") != pseudonym(7, "b")
    assert pseudonym(7, "a").startswith("CD-")


@pytest.mark.parametrize("as_json", [True, False])
def test_formatter_masks_message_and_extras(as_json: bool) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_Formatter(as_json))
    logger = logging.getLogger(f"paht.test.privacy.{as_json}")
    logger.addHandler(handler)
    logger.propagate = False
    logger.warning("citizen 0905123456 wrote", extra={"sender": "tel:+84905123456",
                                                       "citizen_name": "Trần Thị Bình"})
    out = stream.getvalue()
    assert "0905123456" not in out and "+84905123456" not in out
    assert "Trần Thị Bình" not in out
    if as_json:
        assert json.loads(out)["sender"] == "tel:+84*****3456"


async def test_pipeline_logs_carry_no_phone(settings_factory, gateway_client, drain_app,
                                            caplog) -> None:
    caplog.set_level(logging.DEBUG)
    client = await gateway_client(settings_factory())
    sid = "privacy_session_001"
    body = {"sid": sid, "token": session_token("test-session-secret", sid), "id": "1",
            "text": "Mất điện ở tổ 3, liên hệ tôi 0905 777 888, Nguyễn Văn Hùng"}
    await client.post("/webhooks/web", data=json.dumps(body))
    await drain_app(client.app)
    assert caplog.records  # the pipeline did log (accepted, processed, ...)
    formatter = _Formatter(True)
    rendered = "\n".join(formatter.format(r) for r in caplog.records)
    assert "0905 777 888" not in rendered and "0905777888" not in rendered
