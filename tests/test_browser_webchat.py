"""A newcomer's first report, typed into the web chat in headless Chromium (Debian package).

Starts the real `paht serve`, drives the page with Playwright (no browser download: it uses
/usr/bin/chromium), files a report, and checks the tracking code the page shows against the
Open311 and integration APIs. A screenshot is saved under tests/_artifacts/ for review.
"""

from __future__ import annotations

import os
import re
import shutil
import urllib.request
from pathlib import Path

import pytest

from tests.server_support import free_port, start_gateway, wait_ready

pytestmark = pytest.mark.browser
ARTIFACTS = Path(__file__).parent / "_artifacts"
CHROMIUM = os.environ.get("PAHT_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture
def server(tmp_path: Path):
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: .ci/run installs the Debian package")
    port = free_port()
    env = {**os.environ, "PAHT_DATABASE_URL": f"sqlite:///{tmp_path / 'paht.db'}",
           "PAHT_VAR_DIR": str(tmp_path / "var"), "PAHT_API_TOKENS": "browser-token",
           "PAHT_LOG_LEVEL": "WARNING", "PAHT_REVIEW_POLICY": "all"}
    proc = start_gateway(tmp_path, port, env)
    wait_ready(port, proc, path="/healthz")
    base = f"http://127.0.0.1:{port}"
    yield base
    proc.terminate()
    proc.wait(timeout=20)


def test_file_a_report_in_the_web_chat(server: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        context = browser.new_context(
            viewport={"width": 390, "height": 760}, locale="vi-VN",
            geolocation={"latitude": 16.4637, "longitude": 107.5909},
            permissions=["geolocation"],
        )
        page = context.new_page()
        page.goto(server + "/")
        expect(page.locator("header h1")).to_have_text("Phản ánh hiện trường")
        # A welcome says what to send before the citizen types anything.
        expect(page.locator(".msg.bot.welcome")).to_contain_text("mô tả sự việc")
        page.fill("#text", "Cống thoát nước bị nghẹt, nước tràn lên mặt đường")
        page.click("#send")
        # The bot asks where; the citizen shares the browser's location with the button.
        ask = page.locator(".msg.bot", has_text="ở đâu")
        expect(ask).to_be_visible(timeout=15000)
        ask.locator("button").click()
        confirm = page.locator(".msg.bot button", has_text="Gửi phản ánh")
        expect(confirm).to_be_visible(timeout=15000)
        confirm.click()
        done = page.locator(".msg.bot", has_text="PA-")
        expect(done).to_be_visible(timeout=15000)
        code = re.search(r"PA-\d{4}-\d{6}", done.inner_text()).group(0)
        page.screenshot(path=str(ARTIFACTS / "webchat.png"), full_page=True)
        # A reload keeps the conversation: what the citizen wrote and the tracking code.
        page.reload()
        expect(page.locator(".msg.me", has_text="Cống thoát nước bị nghẹt")).to_be_visible(
            timeout=15000)
        expect(page.locator(".msg.bot", has_text=code)).to_be_visible(timeout=15000)
        browser.close()

    import json

    with urllib.request.urlopen(server + "/open311/v2/requests.json") as r:
        requests = json.load(r)
    assert [x["service_request_id"] for x in requests] == [code]
    assert requests[0]["lat"] == pytest.approx(16.4637)
    req = urllib.request.Request(server + f"/api/v1/reports/{code}",
                                 headers={"Authorization": "Bearer browser-token"})
    with urllib.request.urlopen(req) as r:
        detail = json.load(r)
    assert detail["text"].startswith("Cống thoát nước bị nghẹt")
    assert detail["channel"] == "web" and detail["status"] == "submitted"
