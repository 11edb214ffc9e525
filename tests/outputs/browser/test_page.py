"""The browser view in headless Chromium."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request

import pytest

from tests.helpers.commands import ROOT
from tests.helpers.live_server import LiveServer

sync_api = pytest.importorskip("playwright.sync_api")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")


ARTIFACTS = ROOT / "artifacts"


FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def state(url: str) -> dict:
    with urllib.request.urlopen(url + "api/state", timeout=5) as response:
        return json.loads(response.read())


def test_page_streams_and_steers_in_chromium() -> None:
    server = LiveServer()
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1100, "height": 560})
            page.goto(server.url)
            page.wait_for_selector("#top button", timeout=15000)
            page.wait_for_function("document.getElementById('stream').naturalWidth > 0", timeout=15000)
            first = page.locator("#stream").screenshot()
            time.sleep(0.7)
            second = page.locator("#stream").screenshot()
            assert first != second, "the stream did not change over time"
            assert "FPS" in page.inner_text("#fps")

            page.click("#top button[data-class-id='1']")
            page.wait_for_function(
                "document.getElementById('explained').textContent.startsWith('penguin')", timeout=10000
            )
            # "penguin" may be the top-1 class already: wait for the click's POST to reach the loop
            deadline = time.time() + 10
            while state(server.url)["controls"]["class"] != 1 and time.time() < deadline:
                time.sleep(0.05)
            assert state(server.url)["controls"]["class"] == 1
            assert server.loop.controls.query.class_name == server.hub.labels[1]

            page.select_option("#method", "hirescam")
            page.wait_for_function("document.getElementById('method').value === 'hirescam'")
            deadline = time.time() + 5
            while state(server.url)["controls"]["method"] != "hirescam" and time.time() < deadline:
                time.sleep(0.1)
            assert state(server.url)["controls"]["method"] == "hirescam"

            page.click("#auto")
            page.wait_for_function("document.getElementById('auto').className === 'active'", timeout=10000)
            ARTIFACTS.mkdir(exist_ok=True)
            time.sleep(0.5)
            page.screenshot(path=str(ARTIFACTS / "browser_view.png"))
            browser.close()
    finally:
        server.close()
    assert (ARTIFACTS / "browser_view.png").stat().st_size > 10_000
