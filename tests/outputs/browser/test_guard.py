"""Who may talk to the browser view: hosts, origins, tokens, stalled readers."""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import time
from importlib import resources
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

from tests.helpers.live_server import LiveServer

pytest.importorskip("aiohttp")
from aiohttp.test_utils import make_mocked_request

from realtime.outputs.browser import guard
from realtime.outputs.browser.app import ServerThread, make_app
from realtime.outputs.browser.hub import FrameHub
from realtime.outputs.controls import Controls
from realtime.timing import Stats
from tests.helpers.commands import ROOT


def test_the_token_cookie_goes_only_to_a_client_that_presented_the_token() -> None:
    """A local client is let in without a token, but never handed one; the page drops ?token= from the address."""
    import asyncio

    from aiohttp.test_utils import make_mocked_request

    from realtime.outputs.browser import guard

    policy = guard.Policy(frozenset({"127.0.0.1"}), token="s3cret")
    middleware = guard.middleware(policy)

    async def page(request):
        from aiohttp import web

        return web.Response(text="page")

    def cookie(query: str, headers: dict[str, str] | None = None) -> str | None:
        request = make_mocked_request("GET", f"/{query}", headers={"Host": "127.0.0.1", **(headers or {})})
        response = asyncio.run(middleware(request, page))
        morsel = response.cookies.get(guard.TOKEN_COOKIE)
        return None if morsel is None else morsel.value

    assert cookie("?token=wrong") is None  # from 127.0.0.1: let in, but not told the real token
    assert cookie("") is None
    assert cookie("?token=s3cret") == "s3cret"
    assert guard.token_matches("caf\udce9", "s3cret") is False  # undecodable header bytes: no match, no error
    page_text = (ROOT / "realtime" / "outputs" / "browser" / "static" / "index.html").read_text()
    assert "history.replaceState" in page_text


@pytest.fixture(scope="module")
def live():
    server = LiveServer(max_clients=4)
    yield server
    server.close()


def request(url: str, method: str = "GET", path: str = "/", body: bytes | None = None, **headers: str):
    """(status, body bytes) of one request; headers given with underscores for dashes."""
    parts = urlparse(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    sent = {k.replace("_", "-"): v for k, v in headers.items()}
    conn.putrequest(method, path, skip_host="Host" in sent)
    for key, value in sent.items():
        conn.putheader(key, value)
    if body is not None:
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    response = conn.getresponse()
    data = response.read(2000) if path != "/stream.mjpg" else b""
    conn.close()
    return response.status, data


ROUTES = ["/", "/api/state", "/api/snapshot.png", "/stream.mjpg"]


@pytest.mark.parametrize("path", ROUTES)
def test_a_rebound_host_name_is_refused_on_every_route(live, path: str) -> None:
    port = urlparse(live.url).port
    status, _ = request(live.url, path=path, Host=f"attacker.example:{port}")
    assert status == 403


@pytest.mark.parametrize("path", ROUTES)
def test_cross_site_requests_are_refused_on_every_route(live, path: str) -> None:
    assert request(live.url, path=path, Sec_Fetch_Site="cross-site")[0] == 403
    assert request(live.url, path=path, Origin="http://attacker.example")[0] == 403


def test_a_foreign_page_cannot_steer_the_view(live) -> None:
    before = live.hub.snapshot.controls
    body = json.dumps({"method": "layercam", "frozen": True}).encode()
    assert request(live.url, "POST", "/api/control", body, Content_Type="text/plain")[0] == 415
    assert request(live.url, "POST", "/api/control", body, Content_Type="application/x-www-form-urlencoded")[0] == 415
    foreign = request(
        live.url, "POST", "/api/control", body, Content_Type="application/json", Origin="http://attacker.example"
    )
    assert foreign[0] == 403
    time.sleep(0.3)
    assert live.hub.snapshot.controls == before
    own_origin = live.url.rstrip("/")
    ok = request(
        live.url, "POST", "/api/control", b'{"alpha": 0.5}', Content_Type="application/json", Origin=own_origin
    )
    assert ok[0] == 200


@pytest.mark.parametrize(
    "body,content_type",
    [
        (b'{"method": ["gradcam"]}', "application/json"),
        (b'{"method": {"a": 1}}', "application/json"),
        (b'{"class": ' + b"9" * 5000 + b"}", "application/json"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json"),
        (b'{"alpha": 0.5}', "application/json; charset=no-such-charset"),
        (b'{"smooth": 1}', "application/json"),
        (b'{"smooth": 1e999}', "application/json"),
        (b"\xff\xfe", "application/json"),
    ],
)
def test_malformed_controls_get_a_4xx_with_a_message(live, caplog, body: bytes, content_type: str) -> None:
    with caplog.at_level(logging.ERROR):
        status, data = request(live.url, "POST", "/api/control", body, Content_Type=content_type)
    assert 400 <= status < 500
    assert json.loads(data)["error"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "the server logged an error"


def test_a_token_keeps_other_machines_out() -> None:
    policy = guard.Policy(frozenset({"10.0.0.2", "localhost"}), token="s3cret")

    def ask(path: str, remote: str, **headers: str):
        req = make_mocked_request("GET", path, headers={"Host": "10.0.0.2:8080", **headers}).clone(remote=remote)
        return guard.refusal(req, policy)

    assert ask("/", "10.0.0.9").status == 403
    assert ask("/?token=wrong", "10.0.0.9").status == 403
    assert ask("/?token=s3cret", "10.0.0.9") is None
    assert ask("/api/state", "10.0.0.9", Cookie=f"{guard.TOKEN_COOKIE}=s3cret") is None
    assert ask("/", "127.0.0.1") is None  # this machine needs no token


def test_stalled_readers_are_dropped_and_a_new_viewer_gets_in(live) -> None:
    """Four tabs that stop reading hold every slot; within 10 s a fifth viewer streams."""
    parts = urlparse(live.url)
    stalled = []
    for _ in range(4):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect((parts.hostname, parts.port))
        s.sendall(f"GET /stream.mjpg HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
        stalled.append(s)
    try:
        deadline = time.monotonic() + 10.0
        status = 0
        while time.monotonic() < deadline:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
            conn.request("GET", "/stream.mjpg")
            response = conn.getresponse()
            status = response.status
            if status == 200:
                assert response.read(200)  # frames really arrive
                conn.close()
                break
            conn.close()
            time.sleep(0.5)
        assert status == 200, "no slot freed within 10 s"
    finally:
        for s in stalled:
            s.close()


def test_an_early_stream_client_waits_without_spinning() -> None:
    hub = FrameHub(["elephant", "zebra"], frozenset({"gradients"}))
    with ServerThread(make_app(hub), "127.0.0.1", 0) as server:
        parts = urlparse(server.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
        conn.request("GET", "/stream.mjpg")
        assert conn.getresponse().status == 200
        before = _thread_cpu_s(server._thread.native_id)
        time.sleep(1.5)
        cpu = _thread_cpu_s(server._thread.native_id) - before
        assert cpu < 0.15, f"the server thread used {cpu:.2f} s of CPU in 1.5 s waiting for a first frame"
        hub.publish(np.zeros((32, 32, 3), np.uint8), Stats(), [], "", Controls())
        conn.close()


def _thread_cpu_s(native_id: int | None) -> float:
    """User + system CPU seconds of one thread of this process (Linux /proc): other threads do not count."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_snapshots_are_encoded_once_per_frame(monkeypatch) -> None:
    import cv2

    hub = FrameHub(["elephant", "zebra"], frozenset({"gradients"}))
    hub.publish(np.zeros((64, 64, 3), np.uint8), Stats(), [], "", Controls())
    calls = []
    real = cv2.imencode
    monkeypatch.setattr(cv2, "imencode", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    first = [hub.latest_png() for _ in range(40)]
    assert calls == [".png"] and len(set(first)) == 1
    hub.publish(np.ones((64, 64, 3), np.uint8), Stats(), [], "", Controls())
    assert hub.latest_png() != first[0] and calls == [".png", ".png"]


def test_labels_are_text_not_markup() -> None:
    page = resources.files("realtime.outputs.browser").joinpath("static/index.html").read_text(encoding="utf-8")
    assert "innerHTML" not in page and "textContent" in page
