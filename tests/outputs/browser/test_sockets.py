"""The browser view under idle-connection pressure: 300 connections that never send a request, against a
gradcam-live with 200 file descriptors. It keeps serving a real client, its log stays short, and the
recording it was making survives (it used to hold idle sockets for an hour, run out of descriptors, log a
traceback per refused accept, and then delete the recording its read-back could not open)."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.helpers.commands import ROOT
from tests.helpers.video import count_frames


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _low_descriptors() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))


def _state(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/state", timeout=2) as answer:
            return json.loads(answer.read())
    except OSError:
        return None


def test_three_hundred_idle_connections_neither_starve_a_real_client_nor_flood_the_log(tmp_path: Path) -> None:
    port, out = _free_port(), tmp_path / "talk.webm"
    argv = [sys.executable, "-m", "realtime.live.cli", "--demo", "--serve", f"127.0.0.1:{port}", "--no-window",
            "--record", str(out), "--providers", "cpu"]  # fmt: skip
    live = subprocess.Popen(argv, cwd=ROOT, stderr=subprocess.PIPE, text=True, preexec_fn=_low_descriptors)
    idle: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 60
        while _state(port) is None:
            assert live.poll() is None and time.monotonic() < deadline, "the view did not start"
            time.sleep(0.2)
        for _ in range(300):  # connect and say nothing
            with contextlib.suppress(OSError):
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        answered = seen = 0
        first = _state(port)
        for _ in range(16):  # a real client, while the idle ones are held or dropped
            time.sleep(0.5)
            got = _state(port)
            seen += 1
            answered += got is not None
        last = _state(port)
        assert answered >= 0.8 * seen, f"only {answered} of {seen} requests answered"
        assert first and last and last["sequence"] > first["sequence"]  # the view went on
    finally:
        for connection in idle:
            connection.close()
        live.send_signal(signal.SIGTERM)
        _, err = live.communicate(timeout=60)
    assert live.returncode == 0, err[-2000:]
    assert len(err.splitlines()) < 100, f"{len(err.splitlines())} log lines:\n{err[-3000:]}"
    assert "Traceback" not in err and count_frames(out) > 30
