"""The browser view's routes: the page, the stream, the control API, snapshots."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from realtime.outputs.browser.hub import ControlError, parse_control
from tests.helpers.live_server import LiveServer

pytest.importorskip("aiohttp")
from realtime.outputs.browser.app import ServeAddressError, parse_address
from realtime.outputs.browser.hub import FrameHub
from realtime.outputs.controls import Controls


@pytest.mark.parametrize(
    ("host", "url"),
    [("0.0.0.0", "http://127.0.0.1:8080/"), ("::1", "http://[::1]:8080/"), ("::", "http://[::1]:8080/"),
     ("127.0.0.1", "http://127.0.0.1:8080/"), ("10.0.0.2", "http://10.0.0.2:8080/")],
)  # fmt: skip
def test_the_printed_address_opens_in_a_browser(host: str, url: str) -> None:
    from realtime.outputs.browser.app import page_url

    assert page_url(host, 8080) == url


TWO = ["elephant", "zebra"]  # labels of a two-class model


FULL = frozenset({"gradients"})  # what a full graph provides


def test_parse_control_accepts_good_requests() -> None:
    assert parse_control({"method": "gradcam++", "alpha": 0.5}, TWO, FULL) == {"method": "gradcam++", "alpha": 0.5}
    assert parse_control({"class": 1}, TWO, FULL) == {"class_name": "zebra", "class_id": 1, "rank": 0}
    assert parse_control({"class": "auto"}, TWO, FULL) == {"class_name": None, "class_id": None, "rank": 0}
    assert parse_control({"frozen": True, "smooth": 0}, TWO, FULL) == {"frozen": True, "smooth": 0.0}
    assert parse_control({"layer": 1, "style": "tint"}, TWO, FULL, layers=2) == {"layer": 1, "style": "tint"}


@pytest.mark.parametrize(
    "body,message",
    [
        ([1, 2], "JSON object"),
        ({}, "empty"),
        ({"colour": 1}, "unknown field"),
        ({"layer": 1}, "index from 0 to 0"),
        ({"style": "plaid"}, "style 'plaid' is not one of"),
        ({"method": "scorecam"}, "scorecam"),
        ({"class": 2}, "from 0 to 1"),
        ({"class": True}, "from 0 to 1"),
        ({"alpha": 1.5}, "alpha"),
        ({"smooth": "high"}, "smooth"),
        ({"frozen": "yes"}, "frozen"),
    ],
)
def test_parse_control_rejects_bad_requests(body: object, message: str) -> None:
    with pytest.raises(ControlError, match=message):
        parse_control(body, TWO, FULL)


def test_pooled_models_refuse_gradient_methods() -> None:
    with pytest.raises(ControlError, match="--gradients full"):
        parse_control({"method": "layercam"}, TWO, frozenset())


def test_parse_address_defaults_to_loopback() -> None:
    assert parse_address("8080") == ("127.0.0.1", 8080)
    assert parse_address("0.0.0.0:9000") == ("0.0.0.0", 9000)
    for bad in ("http", "localhost:99999", ":"):
        with pytest.raises(ServeAddressError):
            parse_address(bad)


@pytest.fixture
def live():
    server = LiveServer()
    yield server
    server.close()


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def post(url: str, data: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def read_frames(url: str, n: int, timeout: float = 10.0) -> list[bytes]:
    """n JPEG payloads from the MJPEG stream."""
    frames: list[bytes] = []
    with urllib.request.urlopen(url + "stream.mjpg", timeout=timeout) as response:
        assert "multipart/x-mixed-replace" in response.headers["Content-Type"]
        while len(frames) < n:
            line = response.readline()
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
                response.readline()
                frames.append(response.read(length))
    return frames


def test_page_state_and_stream(live: LiveServer) -> None:
    with urllib.request.urlopen(live.url, timeout=5) as response:
        assert b"gradcam-live" in response.read()
    state = get_json(live.url + "api/state")
    assert [t["name"] for t in state["top"]] and state["controls"]["class"] == "auto"
    assert "gradcam++" in state["methods"]
    frames = read_frames(live.url, 4)
    assert all(f[:2] == b"\xff\xd8" for f in frames)  # JPEG
    assert len({f for f in frames}) > 1  # the picture changes over time


def test_clicking_a_class_changes_the_explained_class(live: LiveServer) -> None:
    status, _ = post(live.url + "api/control", json.dumps({"class": 1, "method": "layercam"}).encode())
    assert status == 200
    deadline = time.time() + 5
    while time.time() < deadline:
        state = get_json(live.url + "api/state")
        if state["controls"]["class"] == 1 and state["explained"].startswith("penguin"):
            break
        time.sleep(0.1)
    assert state["controls"]["class"] == 1 and state["controls"]["method"] == "layercam"
    assert state["explained"].startswith("penguin")
    assert live.loop.controls.query.class_name == live.hub.labels[1]


def test_malformed_requests_get_400_and_change_nothing(live: LiveServer) -> None:
    before = get_json(live.url + "api/state")
    bodies = [b"not json", b"[]", b"{}", b'{"alpha": 7}', b'{"method": "x"}', b'{"class": -3}', b'{"zoom": 2}']
    for i in range(100):
        status, reply = post(live.url + "api/control", bodies[i % len(bodies)])
        assert status == 400 and reply["error"]
    after = get_json(live.url + "api/state")
    assert after["controls"] == before["controls"]
    assert after["sequence"] > before["sequence"]  # the loop kept running


def test_fifth_client_gets_503_and_a_stalled_client_blocks_nobody(live: LiveServer) -> None:
    stalled = socket.create_connection(("127.0.0.1", live.server.port))
    stalled.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # and never reads
    streams = [urllib.request.urlopen(live.url + "stream.mjpg", timeout=5) for _ in range(3)]
    try:
        time.sleep(0.3)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(live.url + "stream.mjpg", timeout=5)
        assert err.value.code == 503 and b"full" in err.value.read()
        sequence = live.hub.snapshot.sequence
        deadline = time.monotonic() + 10.0  # a deadline, not a rate: slow CPUs draw fewer frames a second
        while live.hub.snapshot.sequence <= sequence + 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert live.hub.snapshot.sequence > sequence + 10  # the loop still runs, the stalled client blocks nothing
        for s in streams:
            assert s.read(2048)  # the streaming clients still get data
    finally:
        stalled.close()
        for s in streams:
            s.close()


def test_snapshot_download(live: LiveServer) -> None:
    with urllib.request.urlopen(live.url + "api/snapshot.png", timeout=5) as response:
        data = response.read()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert "attachment" in response.headers["Content-Disposition"]


def test_server_stops_cleanly_with_open_streams() -> None:
    server = LiveServer()
    stream = urllib.request.urlopen(server.url + "stream.mjpg", timeout=5)
    stream.read(100)
    start = time.time()
    server.close()
    assert time.time() - start < 8
    with pytest.raises(OSError):
        urllib.request.urlopen(server.url, timeout=2)
    stream.close()


def test_hub_encodes_each_frame_once() -> None:
    hub = FrameHub(["elephant", "zebra"], frozenset({"gradients"}))
    assert hub.latest_jpeg() is None
    from realtime.timing import Stats

    hub.publish(np.zeros((8, 8, 3), np.uint8), Stats(), [(0, "elephant", 0.9)], "elephant", Controls())
    first = hub.latest_jpeg()
    assert first is not None and hub.latest_jpeg() is first
