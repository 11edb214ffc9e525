"""The live view for presenters (#25): camera modes asked the way drivers need, cameras listed, mirror."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from realtime import cli
from realtime.camera import CameraMode, apply_mode, mismatch
from realtime.camera_list import describe, list_cameras
from realtime.controls import Controls
from realtime.demo.live import DemoScene
from realtime.demo.models import demo_model_paths
from realtime.demo.tracking import map_centre
from realtime.engine import Engine, EngineOptions
from realtime.meters import Meters
from realtime.schedule import ModelRate
from realtime.sourceset import SourceSet

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
    from realtime import sources

    monkeypatch.chdir(tmp_path)  # the demo without a display records gradcam_demo.webm here
    monkeypatch.setattr(sources, "open_capture", lambda *args: FakeCapture())
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
    from realtime import camera_list

    original = camera_list.list_cameras
    monkeypatch.setattr(camera_list, "list_cameras", lambda: original(lambda: [], lambda path: ()))
    assert cli.main(["--list-cameras"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "no cameras found here: try --source FILE, a stream URL, or --demo"
    ]  # fmt: skip
    from realtime.camera_list import _v4l2_modes

    assert _v4l2_modes("/dev/video99") == ()  # linuxpy on a device that is not there: no modes, no traceback
    two = [(0, "HD Pro Webcam C920", "/dev/video0"), (2, "Integrated Camera", "/dev/video2")]
    modes = {"/dev/video0": (CameraMode((1920, 1080), 30.0, "MJPG"), CameraMode((640, 480), 30.0, "YUYV")),
             "/dev/video2": (CameraMode((1280, 720), 30.0, "MJPG"),)}  # fmt: skip
    lines = describe(*list_cameras(lambda: two, lambda path: modes[path]))
    assert lines == ["--source 0: HD Pro Webcam C920 (/dev/video0)", "    1920x1080 30 FPS MJPG",
                     "    640x480 30 FPS YUYV", "--source 2: Integrated Camera (/dev/video2)",
                     "    1280x720 30 FPS MJPG"]  # fmt: skip


class Still:
    """A live source showing one picture."""

    live, name, fps = True, "still", 30.0

    def __init__(self, image: np.ndarray) -> None:
        self.image = image

    def open(self) -> None:
        pass

    def read(self) -> np.ndarray:
        return self.image

    def close(self) -> None:
        pass


def test_mirror_keeps_the_map_on_the_animal() -> None:
    """The fair demo model on a penguin at the left: mirrored, the frame shown is flipped and the map's
    hot part sits on the penguin's mirrored place, not where it was."""
    scene = DemoScene()
    shot = next(s for s in map(scene.frame, range(0, 400, 5)) if s.label == 1 and s.box[0] + s.box[2] < 250)
    width = shot.image.shape[1]
    engine = Engine(demo_model_paths()["fair"], EngineOptions(providers="cpu", warmup=0))
    centres = {}
    for mirror in (False, True):
        with SourceSet([Still(shot.image)]) as sources, ModelRate([engine], sources, Meters(1, False), "squash") as s:
            step = s.next(Controls(mirror=mirror), last=True)
        assert step is not None
        image = step.frames[0].image
        np.testing.assert_array_equal(image, cv2.flip(shot.image, 1) if mirror else shot.image)
        centre = map_centre(step.maps[0][0][0], image.shape)
        assert centre is not None
        centres[mirror] = centre[0]
    x, w = shot.box[0], shot.box[2]
    assert x <= centres[False] <= x + w  # on the penguin
    assert width - x - w <= centres[True] <= width - x  # on the mirrored penguin, far from where it was
    assert centres[True] > width / 2 > centres[False]


def test_panels_of_one_model_at_two_precisions_are_told_apart(tmp_path) -> None:
    import shutil

    from realtime.panels import panel_names

    fair = demo_model_paths()["fair"]
    copy = tmp_path / "fair_again.onnx"
    shutil.copyfile(fair, copy)
    engines = [Engine(p, EngineOptions(providers="cpu", warmup=0)) for p in (fair, copy)]
    assert panel_names(engines) == ["fair fp32 (fair.onnx)", "fair fp32 (fair_again.onnx)"]
    int8 = type("E", (), {"info": type("I", (), {"model_name": "fair", "precision": "int8 (all)"})(), "path": copy})()
    assert panel_names([engines[0], int8]) == ["fair fp32", "fair int8 (all)"]  # type: ignore[list-item]
    biased = Engine(demo_model_paths()["biased"], EngineOptions(providers="cpu", warmup=0))
    assert panel_names([biased, engines[0]]) == ["biased", "fair"]


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.mark.parametrize("window", [320, 640, 1280, 1920, 2560, 3840])
def test_no_caption_text_overlaps_or_leaves_its_band(window: int) -> None:
    """From the drawing code's own boxes: every window width, 1 to 4 panels side by side, top-k 1 to 5,
    the longest status line gradcam-live writes (camera rate) and long class names."""
    from realtime.caption import caption_layout
    from realtime.overlay import Hud

    top = [("a very long class name indeed, longer than any panel", 0.61), ("tabby cat", 0.2), ("lynx", 0.05)]
    for panels in range(1, 5):
        for top_k in range(1, 6):
            width = window // (panels * top_k)
            hud = Hud("Egyptian cat, the explained class of this panel", 0.7, "gradcam++", top, 30.6, 483.9, 32.0,
                      2.0, 2, ("no class 'penguin' in this model",))  # fmt: skip
            layout = caption_layout(width, hud)
            boxes = layout.boxes()
            for box in boxes:
                assert 0 <= box[0] <= box[2] <= width and 0 <= box[1] <= box[3] <= layout.height, (width, box)
            for i, a in enumerate(boxes):
                for b in boxes[i + 1 :]:
                    assert not _overlap(a, b), (width, a, b)
            if width >= 120:  # shortened, not dropped
                assert layout.texts[0].text.startswith("Egyptian"), (width, layout.texts[0])


@pytest.mark.parametrize("panel", [(640, 480), (1280, 720), (1920, 1080)])
def test_caption_text_is_readable_from_the_back_of_the_room(panel: tuple[int, int]) -> None:
    """The window scales the whole picture to the screen, so what counts is the text's height against
    the picture's: at least 2.5% of the panel with its caption (27 px of a 1080p projector)."""
    from realtime.caption import caption_layout
    from realtime.overlay import FONT, Hud, thickness

    layout = caption_layout(panel[0], Hud("tabby", 0.9, "gradcam", [("tabby", 0.9)], 30.0, 12.0, 40.0))
    first = layout.texts[0]
    cap_height = cv2.getTextSize("T", FONT, first.scale, thickness(first.scale))[0][1]
    assert cap_height >= 0.025 * (panel[1] + layout.height), (cap_height, panel[1] + layout.height)


def test_two_cameras_are_drawn_at_their_rate_not_twice_it() -> None:
    """Two live 30 FPS sources that always have a new frame: the mosaic steps about 30 times a second
    (it would step hundreds of times, each with one source new, if it stepped on every new frame)."""
    import time

    image = np.zeros((48, 64, 3), np.uint8)
    with SourceSet([Still(image), Still(image)]) as sources:
        assert 0.9 / 30 < sources.step_every <= 1 / 30  # known once opened: a camera's rate comes with it
        start, steps = time.perf_counter(), 0
        while time.perf_counter() - start < 1.0:
            assert sources.get(timeout=1.0) is not None
            steps += 1
    # the upper bound is the point (not twice the rate); the lower one only says it still steps, with room
    # for a busy 2-core machine (19 steps were seen once while the suite ran)
    assert 15 <= steps <= 33, steps
