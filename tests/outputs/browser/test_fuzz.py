"""The control API and the server under random bodies and header bytes."""

from __future__ import annotations

import json
import random
import socket
import time
import urllib.error
import urllib.request

import pytest

from realtime import contract
from realtime.maps import methods
from realtime.outputs.browser.hub import ControlError, parse_control
from tests.helpers.live_server import LiveServer


def _random_value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, 1, -1, 2**31, 10**400, -(10**30), rng.randrange(-100, 100)])
    if kind == 2:
        return rng.choice([0.5, -0.0, 1e308, float("inf"), float("-inf"), float("nan"), rng.random()])
    if kind == 3:
        return "".join(chr(rng.randrange(0x20, 0x2FFFF)) for _ in range(rng.randrange(0, 12)))
    if kind == 4:
        return rng.choice([*methods.METHODS, "auto", "heat", "tint", "snapshot", "", "x" * 5000])
    if kind == 5:
        return rng.randrange(0, 3)
    if kind == 6:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return {str(_random_value(rng, depth + 1))[:20]: _random_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))}


def _random_body(rng: random.Random) -> object:
    fields = ["method", "class", "alpha", "smooth", "frozen", "style", "layer", "action", "other"]
    if rng.random() < 0.1:
        return _random_value(rng)
    return {rng.choice(fields): _random_value(rng) for _ in range(rng.randrange(0, 4))}


def test_a_thousand_random_bodies_are_each_accepted_or_refused_with_a_message() -> None:
    rng = random.Random(7)
    labels = ["elephant", "penguin", "7", "elephant"]  # numeric and repeated labels too
    refused = 0
    for _ in range(1000):
        body = _random_body(rng)
        try:
            parse_control(body, labels, frozenset({contract.GRADIENTS}), layers=2)
        except ControlError as exc:
            refused += 1
            assert str(exc) and "\n" not in str(exc) and len(str(exc)) < 400
    assert refused > 500  # most random bodies are wrong; none raised anything but a ControlError


@pytest.fixture(scope="module")
def live():
    server = LiveServer()
    yield server
    server.close()


def test_random_bodies_and_header_bytes_never_get_a_500_and_the_loop_goes_on(live, caplog) -> None:
    rng = random.Random(11)
    before = live.hub.snapshot.sequence
    for _ in range(200):
        body = json.dumps(_random_body(rng), allow_nan=True).encode()
        request = urllib.request.Request(
            live.url + "api/control", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            urllib.request.urlopen(request, timeout=5).close()
        except urllib.error.HTTPError as exc:
            assert exc.code in (400, 413, 415), exc.code
    for _ in range(200):
        value = (
            bytes(rng.randrange(0, 256) for _ in range(rng.randrange(1, 40))).replace(b"\r", b"").replace(b"\n", b"")
        )
        name = rng.choice([b"Cookie", b"Authorization", b"X-Token", b"Host", b"Content-Type", b"Origin"])
        raw = (
            b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\n" + name + b": " + value + b"\r\nConnection: close\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", live.server.port), timeout=5) as conn:
            conn.sendall(raw)
            reply = conn.recv(64)
        assert not reply.startswith(b"HTTP/1.1 500"), (name, value, reply)
    time.sleep(0.5)
    assert live.hub.snapshot.sequence > before  # the loop kept running
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
