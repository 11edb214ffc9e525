"""Camera modes: asked for in the drivers' order, and what the camera gave said in one line; --list-cameras."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from realtime.live import cli
from realtime.sources.camera_listing import describe, list_cameras
from realtime.sources.camera_mode import CameraMode, apply_mode, mismatch

MODES = {  # what a typical USB webcam offers: 720p30 only as MJPG
    "YUYV": {(640, 480): (30.0,), (1280, 720): (10.0,)},
    "MJPG": {(640, 480): (30.0,), (1280, 720): (30.0,), (1920, 1080): (30.0,)},
}


class FakeCapture:
    """A V4L2-like driver: a size or rate is taken only if the current pixel format offers it (so a size
    asked before its FOURCC is refused), and get() reports what it runs at."""

    def __init__(self, fourcc: str = "YUYV") -> None:
        self.fourcc, self.size, self.fps = fourcc, (640, 480), 30.0
        self.calls: list[str] = []
        self.released = False

    def set(self, prop: int, value: float) -> bool:
        name = {cv2.CAP_PROP_FOURCC: "fourcc", cv2.CAP_PROP_FRAME_WIDTH: "width",
                cv2.CAP_PROP_FRAME_HEIGHT: "height", cv2.CAP_PROP_FPS: "fps"}[prop]  # fmt: skip
        self.calls.append(name)
        if name == "fourcc":
            code = int(value).to_bytes(4, "little").decode()
            if code not in MODES:
                return False
            self.fourcc = code
            if self.size not in MODES[code]:
                self.size = min(MODES[code])
        elif name in ("width", "height"):
            wanted = (int(value), self.size[1]) if name == "width" else (self.size[0], int(value))
            offered = [s for s in MODES[self.fourcc] if (s[0] if name == "width" else s[1]) == int(value)]
            if not offered:
                return False
            self.size = wanted if wanted in MODES[self.fourcc] else offered[0]
        else:
            if value not in MODES[self.fourcc][self.size]:
                return False
            self.fps = value
        self.fps = self.fps if self.fps in MODES[self.fourcc][self.size] else MODES[self.fourcc][self.size][0]
        return True

    def get(self, prop: int) -> float:
        if prop == cv2.CAP_PROP_FOURCC:
            return float(int.from_bytes(self.fourcc.encode(), "little"))
        return float({cv2.CAP_PROP_FRAME_WIDTH: self.size[0], cv2.CAP_PROP_FRAME_HEIGHT: self.size[1],
                      cv2.CAP_PROP_FPS: self.fps}.get(prop, 0.0))  # fmt: skip

    def isOpened(self) -> bool:  # OpenCV's name
        return True

    def read(self) -> tuple[bool, np.ndarray]:
        frame = np.full((self.size[1], self.size[0], 3), 100, np.uint8)
        cv2.circle(frame, (self.size[0] // 3, self.size[1] // 2), self.size[1] // 6, (0, 200, 255), -1)
        return True, frame

    def release(self) -> None:
        self.released = True


def test_the_mode_is_asked_for_in_the_drivers_order_and_read_back() -> None:
    capture = FakeCapture()
    asked = CameraMode((1280, 720), 30.0, "MJPG")
    got = apply_mode(capture, asked)
    assert capture.calls == ["fourcc", "width", "height", "fps"]  # FOURCC first: 720p30 exists only as MJPG
    assert got == asked and mismatch("camera 0", asked, got) is None
    wrong_order = FakeCapture()  # the same mode asked size first, as OpenCV's defaults would: YUYV's 10 FPS
    for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, 1280), (cv2.CAP_PROP_FRAME_HEIGHT, 720), (cv2.CAP_PROP_FPS, 30)):
        wrong_order.set(prop, value)
    assert (wrong_order.size, wrong_order.fps, wrong_order.fourcc) == ((1280, 720), 10.0, "YUYV")


def test_a_refused_mode_says_what_the_camera_gave_in_one_line() -> None:
    capture = FakeCapture()
    got = apply_mode(capture, CameraMode((1280, 720), 60.0, "YUYV"))
    assert got == CameraMode((1280, 720), 10.0, "YUYV")  # what the capture reports, not what was asked
    line = mismatch("camera 0", CameraMode((1280, 720), 60.0, "YUYV"), got)
    assert line == ("camera 0: asked for 1280x720 60 FPS YUYV, the camera gives 1280x720 10 FPS YUYV; "
                    "gradcam-live --list-cameras shows the modes it offers")  # fmt: skip


def test_a_refused_mode_is_one_line_and_the_loop_goes_on(monkeypatch, capsys, tmp_path) -> None:
    from realtime.sources import kinds

    monkeypatch.chdir(tmp_path)  # the demo without a display records gradcam_demo.webm here
    monkeypatch.setattr(kinds, "open_capture", lambda *args: FakeCapture())
    code = cli.main(["--demo", "--source", "0", "--camera-size", "3840x2160", "--fourcc", "MJPG", "--camera-fps",
                     "30", "--no-window", "--max-frames", "6", "--providers", "cpu"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err and "6 frames shown" in err, err
    notes = [line for line in err.splitlines() if "asked for" in line]
    assert notes == ["gradcam-live: camera 0: asked for 3840x2160 30 FPS MJPG, the camera gives 640x480 30 FPS "
                     "MJPG; gradcam-live --list-cameras shows the modes it offers"], err  # fmt: skip


@pytest.mark.parametrize(("argument", "value"), [("--camera-size", "1280"), ("--fourcc", "MJPEG"),
                                                  ("--camera-fps", "0")])  # fmt: skip
def test_bad_camera_settings_are_refused_in_one_line(argument: str, value: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.parse_config([argument, value])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err and argument in err.splitlines()[-1]


def test_listing_cameras_with_none_and_with_two(capsys, monkeypatch) -> None:
    from realtime.sources import camera_listing

    original = camera_listing.list_cameras
    monkeypatch.setattr(camera_listing, "list_cameras", lambda: original(lambda: [], lambda path: ()))
    assert cli.main(["--list-cameras"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "no cameras found here: try --source FILE, a stream URL, or --demo"
    ]  # fmt: skip
    from realtime.sources.camera_listing import _v4l2_modes

    assert _v4l2_modes("/dev/video99") == ()  # linuxpy on a device that is not there: no modes, no traceback
    two = [(0, "HD Pro Webcam C920", "/dev/video0"), (2, "Integrated Camera", "/dev/video2")]
    modes = {"/dev/video0": (CameraMode((1920, 1080), 30.0, "MJPG"), CameraMode((640, 480), 30.0, "YUYV")),
             "/dev/video2": (CameraMode((1280, 720), 30.0, "MJPG"),)}  # fmt: skip
    lines = describe(*list_cameras(lambda: two, lambda path: modes[path]))
    assert lines == ["--source 0: HD Pro Webcam C920 (/dev/video0)", "    1920x1080 30 FPS MJPG",
                     "    640x480 30 FPS YUYV", "--source 2: Integrated Camera (/dev/video2)",
                     "    1280x720 30 FPS MJPG"]  # fmt: skip
