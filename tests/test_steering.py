"""What the presenter asks for acts on what it saw, and only what the graphs can compute is chosen.

Keys and browser actions act on the frame on screen when they came (not the next one); a method
a graph cannot compute is refused where it is chosen, and the loop has no fallback of its own;
the recorder knows its frame rate when it is made.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import cv2
import numpy as np
import pytest

from realtime import cam
from realtime.controls import Controls, apply_key
from realtime.demo.models import demo_model_paths
from realtime.engine import Engine, EngineOptions
from realtime.loop import Loop
from realtime.outputs import Output, Recorder, Shown, Snapshots
from realtime.serve.hub import ControlError, FrameHub
from realtime.sourceset import SourceSet
from tests.conftest import Collect, count_frames

ROOT = Path(__file__).resolve().parents[1]
STEP = 10  # frame i is a constant STEP * i: the picture says which frame it is


class Numbered:
    """A file-like source (every frame delivered, no rate of its own) whose frame i is all STEP * i."""

    live, name, fps = False, "numbered", 0.0

    def __init__(self, frames: int) -> None:
        self.frames, self.sent = frames, 0

    def open(self) -> None:
        pass

    def read(self) -> np.ndarray | None:
        if self.sent >= self.frames:
            return None
        self.sent += 1
        return np.full((96, 128, 3), STEP * (self.sent - 1), np.uint8)

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def fair() -> Engine:
    return Engine(demo_model_paths()["fair"], EngineOptions(providers="cpu", warmup=0))


def number(shown: Shown) -> int:
    """Which source frame `shown` was drawn on."""
    frame = shown.frames[0]
    assert frame is not None
    return int(frame.image[0, 0, 0]) // STEP


def test_s_saves_the_frame_on_screen_when_it_was_pressed(fair: Engine, tmp_path: Path) -> None:
    keys = Collect([-1, -1, ord("s"), -1, -1])  # pressed while frame 2 is on screen
    snapshots = Snapshots(tmp_path, log=lambda m: None)
    with SourceSet([Numbered(8)]) as sources:
        Loop(fair, sources, Controls(), [keys, snapshots]).run(5)
    assert len(snapshots.saved) == 1
    saved = cv2.imread(str(snapshots.saved[0]))
    assert [number(s) for s in keys.shown] == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(saved, keys.shown[2].image)  # the image that was on screen, not frame 3's
    assert not np.array_equal(saved, keys.shown[3].image)


def test_r_records_from_the_frame_on_screen_until_the_one_on_screen_at_the_second_press(
    fair: Engine, tmp_path: Path
) -> None:
    keys = Collect([-1, -1, ord("r"), -1, -1, ord("r"), -1, -1])  # on at frame 2, off at frame 5
    recorder = Recorder(None, tmp_path, fps=10.0, log=lambda m: None)
    with SourceSet([Numbered(8)]) as sources, recorder:
        Loop(fair, sources, Controls(), [keys, recorder]).run(8)
    (video,) = tmp_path.glob("gradcam_*.mp4")
    assert count_frames(video) == 4  # frames 2, 3, 4 and 5


class Browser(Output):
    """Clicks the browser's snapshot action while frame `at` is on screen."""

    def __init__(self, hub: FrameHub, at: int) -> None:
        self.hub, self.at, self.shown = hub, at, []

    def write(self, shown: Shown) -> None:
        self.shown.append(shown)
        if len(self.shown) == self.at + 1:
            assert self.hub.request({"action": "snapshot"}) == {"action": "snapshot"}


def test_the_browsers_snapshot_action_saves_the_frame_on_screen_when_it_came(fair: Engine, tmp_path: Path) -> None:
    hub = FrameHub(fair.info.labels, fair.provides)
    browser = Browser(hub, at=1)
    snapshots = Snapshots(tmp_path, log=lambda m: None)
    with SourceSet([Numbered(6)]) as sources:
        Loop(fair, sources, Controls(), [hub, browser, snapshots]).run(4)
    assert len(snapshots.saved) == 1 and number(browser.shown[1]) == 1
    np.testing.assert_array_equal(cv2.imread(str(snapshots.saved[0])), browser.shown[1].image)
    with pytest.raises(ControlError, match="not one of snapshot"):
        hub.request({"action": "format-disk"})


def test_no_chooser_selects_a_method_the_graph_lacks(small_models) -> None:
    from realtime.api import GradCam

    pooled = Engine(small_models["pooled"], EngineOptions(providers="cpu", warmup=0))
    assert pooled.provides == frozenset()  # channel weights only: no full gradients
    controls, seen = Controls(), set()
    for _ in range(2 * len(cam.METHODS)):  # the m key cycles only through what the graph can compute
        controls = apply_key(controls, ord("m"), pooled.provides)[0]
        seen.add(controls.method)
    assert seen == set(cam.usable_methods(pooled.provides)) == {"gradcam", "counterfactual"}
    refusals = []
    with pytest.raises(ControlError) as browser:  # the browser's control API
        FrameHub(pooled.info.labels, pooled.provides).request({"method": "gradcam++"})
    refusals.append(str(browser.value))
    with pytest.raises(cam.MethodNeedsGradientsError) as api:  # the Python API
        GradCam(small_models["pooled"], providers="cpu")(np.zeros((64, 64, 3), np.uint8), method="hirescam")
    refusals.append(str(api.value))
    with SourceSet([Numbered(2)]) as sources, pytest.raises(cam.MethodNeedsGradientsError) as loop:
        Loop(pooled, sources, Controls(method="layercam"))  # a caller's starting method
    refusals.append(str(loop.value))
    assert "start with one of gradcam, counterfactual" in refusals[-1]
    for message in refusals:
        assert "--gradients full" in message and "\n" not in message, message


def test_the_loop_has_no_method_fallback() -> None:
    """The loop and its parts neither catch a method error nor replace the method they were given."""
    for name in ("loop", "schedule", "meters"):
        tree = ast.parse((ROOT / "realtime" / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ExceptHandler) and node.type is not None:
                assert "MethodNeedsGradientsError" not in ast.unparse(node.type), f"{name}.py:{node.lineno}"
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("replace"):
                assert "method" not in {k.arg for k in node.keywords}, f"{name}.py:{node.lineno}"


def test_the_recorder_is_built_with_its_frame_rate(fair: Engine, tmp_path: Path) -> None:
    from realtime.session import LiveConfig, run_session
    from tests.conftest import write_video

    assert not isinstance(inspect.getattr_static(Recorder, "fps", None), property)  # no setter to call afterwards
    with Recorder(tmp_path / "a.avi", tmp_path, fps=12.5) as made:
        assert made.fps == 12.5 and made.recorder is not None and made.recorder.fps == 12.5
    video = write_video(tmp_path / "clip.mp4", 8, size=(160, 120), fps=24.0)
    record = tmp_path / "out.avi"
    config = LiveConfig(
        sources=(str(video),), models=(demo_model_paths()["fair"],), providers="cpu", record=record,
        snapshots=tmp_path / "snaps", window=False, max_frames=4, display="camera",
    )  # fmt: skip
    run_session(config)
    capture = cv2.VideoCapture(str(record))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(24.0)  # camera rate: the source's rate, from the start
    capture.release()
