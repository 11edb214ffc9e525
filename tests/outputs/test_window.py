"""The real window, under Xvfb: full screen, the key list, readable captions."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from realtime.outputs import window
from realtime.outputs.base import SinkError
from realtime.outputs.window import Window
from tests.helpers.commands import ROOT


def test_a_window_without_opencv_gui_names_the_cause_and_the_fix(monkeypatch) -> None:
    import cv2

    def no_gui(*args: object) -> None:
        raise cv2.error("The function is not implemented. Rebuild the library with Windows, GTK+ 2.x or Cocoa support")

    monkeypatch.setattr(window, "has_display", lambda: True)
    monkeypatch.setattr(window.cv2, "namedWindow", no_gui)
    monkeypatch.setattr(window, "opencv_has_gui", lambda: False)
    monkeypatch.setattr(window, "headless_installed", lambda: True)
    with pytest.raises(SinkError, match=r"headless is installed\).*--force-reinstall opencv-python"):
        Window()
    monkeypatch.setattr(window, "headless_installed", lambda: False)
    with pytest.raises(SinkError, match=r"no GUI \(built without one\)"):
        Window()


ARTIFACTS = ROOT / "artifacts"


TOOLS = ("Xvfb", "openbox", "xdotool")


def _tools() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        message = f"{', '.join(missing)} missing (Debian: apt-get install xvfb openbox xdotool)"
        if os.environ.get("CI"):
            pytest.fail(message)  # .ci/run installs them: a skip there would hide a broken setup
        pytest.skip(message)


def _press_h(env: dict[str, str], live: subprocess.Popen) -> None:
    """Focus the visible gradcam-live window and press h. windowfocus needs no window-manager support
    (windowactivate failed when openbox had not yet claimed _NET_ACTIVE_WINDOW on a loaded CI machine);
    retried while the full-screen window is being mapped."""
    command = ["xdotool", "search", "--onlyvisible", "--name", "gradcam-live", "windowfocus", "--sync", "key", "h"]
    errors = []
    for _ in range(10):
        assert live.poll() is None, f"gradcam-live ended early: {live.communicate(timeout=10)[1][-2000:]}"
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
        if done.returncode == 0:
            return
        errors.append(done.stderr.strip())
        time.sleep(0.5)
    raise AssertionError(f"xdotool could not press h in the window: {errors[-3:]}")


def _free_display() -> str:
    for number in range(90, 130):
        if not Path(f"/tmp/.X11-unix/X{number}").exists() and not Path(f"/tmp/.X{number}-lock").exists():
            return f":{number}"
    raise RuntimeError("no free X display number")


def _wait(check, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.25)
    return False



@contextlib.contextmanager
def _live_under_xvfb(screen: tuple[int, int], argv: list[str], cwd: Path) -> Iterator[tuple[dict[str, str], Any]]:
    """An Xvfb display of `screen` (width, height) with openbox, and gradcam-live `argv` on it once its window
    shows: (the display's environment, the process). Everything is stopped on the way out."""
    display = _free_display()
    env = {**os.environ, "DISPLAY": display}
    server = subprocess.Popen(["Xvfb", display, "-screen", "0", f"{screen[0]}x{screen[1]}x24", "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    children = [server]
    try:
        assert _wait(lambda: Path(f"/tmp/.X11-unix/X{display[1:]}").exists(), 10), "Xvfb did not start"
        children.append(subprocess.Popen(["openbox"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        live = subprocess.Popen([sys.executable, "-m", "realtime.live.cli", *argv], env=env, cwd=cwd,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        children.append(live)

        def window() -> bool:
            found = subprocess.run(["xdotool", "search", "--name", "gradcam-live"], env=env, capture_output=True)
            return found.returncode == 0

        assert _wait(window, 60), "no gradcam-live window appeared"
        yield env, live
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.terminate()
                child.wait(timeout=10)


def test_full_screen_with_the_key_list_under_xvfb(tmp_path: Path) -> None:
    _tools()
    from PIL import ImageGrab

    argv = ["--demo", "--fullscreen", "--max-frames", "3000", "--providers", "cpu"]
    with _live_under_xvfb((1920, 1080), argv, tmp_path) as (env, live):
        display = env["DISPLAY"]
        time.sleep(1.5)  # full screen, and a few frames drawn
        before = np.asarray(ImageGrab.grab(xdisplay=display).convert("RGB"))
        _press_h(env, live)
        time.sleep(1.0)
        shot = np.asarray(ImageGrab.grab(xdisplay=display).convert("RGB"))
        subprocess.run(["xdotool", "key", "q"], env=env, check=True, capture_output=True, timeout=30)
        _, err = live.communicate(timeout=60)
        assert live.returncode == 0 and "Traceback" not in err, err
        assert "(quit)" in err, err  # the q key ended it, not --max-frames
    ARTIFACTS.mkdir(exist_ok=True)
    from PIL import Image

    Image.fromarray(shot).save(ARTIFACTS / "presenting.png")
    rows = np.nonzero(shot.std(axis=(1, 2)) > 1.0)[0]  # rows with a picture in them (letterboxing is flat)
    columns = np.nonzero(shot[rows[0] : rows[-1]].std(axis=(0, 2)) > 1.0)[0]
    assert columns[0] <= 2 and columns[-1] >= 1917, "the picture does not fill the screen's width"
    assert rows[-1] - rows[0] >= 0.8 * 1080

    def title_pixels(image: np.ndarray) -> int:  # the key list's title colour, BGR (0, 220, 255) on screen
        region = image[rows[0] : rows[0] + 120, :900].astype(int)
        close = (np.abs(region - np.array([255, 220, 0])) < 40).all(axis=2)
        return int(close.sum())

    assert title_pixels(shot) > 500 and title_pixels(before) < 50, (title_pixels(shot), title_pixels(before))


def _caption_text_height(shot: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> int:
    """The tallest run of rows holding caption text (bright pixels on the dark caption band), in screen pixels:
    the band is the window picture's lower rows whose background is near black."""
    picture = shot[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1].astype(int)
    dark_rows = np.nonzero(np.median(picture, axis=(1, 2)) < 45)[0]  # the caption band's background
    band = picture[dark_rows[0] :] if dark_rows.size else picture[-1:]
    text = (band.min(axis=2) > 170).sum(axis=1) > 2  # rows with several white pixels: caption lettering
    tallest = run = 0
    for has_text in text:
        run = run + 1 if has_text else 0
        tallest = max(tallest, run)
    return tallest


@pytest.mark.parametrize("screen", [(1280, 720), (1920, 1080)])
def test_the_window_opens_at_most_of_the_screen_with_captions_readable_from_the_back(
    tmp_path: Path, screen: tuple[int, int]
) -> None:
    """No --fullscreen, no --window-size: the first frame fills about 80% of the screen's height, the picture's
    aspect kept, with no toolbar above it; the caption letters are tall enough to read across a room."""
    _tools()
    from PIL import Image, ImageGrab

    width, height = screen
    with _live_under_xvfb(screen, ["--demo", "--max-frames", "3000", "--providers", "cpu"], tmp_path) as (env, live):
        time.sleep(2.0)  # sized, and a few frames drawn
        shot = np.asarray(ImageGrab.grab(xdisplay=env["DISPLAY"]).convert("RGB"))
        subprocess.run(["xdotool", "key", "q"], env=env, check=False, capture_output=True, timeout=30)
        live.communicate(timeout=60)
    ARTIFACTS.mkdir(exist_ok=True)
    Image.fromarray(shot).save(ARTIFACTS / f"window_{width}x{height}.png")
    rows = np.nonzero(shot.std(axis=(1, 2)) > 1.0)[0]  # rows with a picture in them
    columns = np.nonzero(shot[rows[0] : rows[-1]].std(axis=(0, 2)) > 1.0)[0]
    picture_h, picture_w = rows[-1] - rows[0] + 1, columns[-1] - columns[0] + 1
    assert 0.7 * height <= picture_h <= 0.95 * height, (picture_h, picture_w)  # about 80% of the smaller side
    assert picture_w <= width
    letters = _caption_text_height(shot, rows, columns)
    assert letters >= 0.016 * height, f"caption letters {letters} px high on a {height} px screen"
