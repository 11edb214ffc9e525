"""Actions act on the frame that was on screen when they came."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from realtime.demo.models import demo_model_paths
from realtime.demo.tracking import map_centre
from realtime.engines.local import LocalEngine
from realtime.engines.providers import EngineOptions
from realtime.live.loop import Loop
from realtime.live.meters import Meters
from realtime.live.scheduler import ModelRate
from realtime.outputs.base import Output, Shown
from realtime.outputs.browser.hub import ControlError, FrameHub
from realtime.outputs.controls import Controls
from realtime.outputs.recording import Recorder
from realtime.outputs.stills import Snapshots
from realtime.sources.demo import DemoScene
from realtime.sources.group import SourceSet
from realtime.view.look import Look
from tests.helpers.collect import Collect
from tests.helpers.sources import STEP, Numbered, Still
from tests.helpers.video import count_frames


def test_mirror_keeps_the_map_on_the_animal() -> None:
    """The fair demo model on a penguin at the left: mirrored, the frame shown is flipped and the map's
    hot part sits on the penguin's mirrored place, not where it was."""
    scene = DemoScene()
    shot = next(s for s in map(scene.frame, range(0, 400, 5)) if s.label == 1 and s.box[0] + s.box[2] < 250)
    width = shot.image.shape[1]
    engine = LocalEngine(demo_model_paths()["fair"], EngineOptions(providers="cpu", warmup=0))
    centres = {}
    for mirror in (False, True):
        with SourceSet([Still(shot.image)]) as sources, ModelRate([engine], sources, Meters(1, False), "squash") as s:
            step = s.next(Controls(look=Look(mirror=mirror)), last=True)
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


@pytest.fixture(scope="module")
def fair() -> LocalEngine:
    return LocalEngine(demo_model_paths()["fair"], EngineOptions(providers="cpu", warmup=0))


def number(shown: Shown) -> int:
    """Which source frame `shown` was drawn on."""
    frame = shown.frames[0]
    assert frame is not None
    return int(frame.image[0, 0, 0]) // STEP


def test_s_saves_the_frame_on_screen_when_it_was_pressed(fair: LocalEngine, tmp_path: Path) -> None:
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
    fair: LocalEngine, tmp_path: Path
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


def test_the_browsers_snapshot_action_saves_the_frame_on_screen_when_it_came(fair: LocalEngine, tmp_path: Path) -> None:
    hub = FrameHub(fair.info.labels, fair.provides)
    browser = Browser(hub, at=1)
    snapshots = Snapshots(tmp_path, log=lambda m: None)
    with SourceSet([Numbered(6)]) as sources:
        Loop(fair, sources, Controls(), [hub, browser, snapshots]).run(4)
    assert len(snapshots.saved) == 1 and number(browser.shown[1]) == 1
    np.testing.assert_array_equal(cv2.imread(str(snapshots.saved[0])), browser.shown[1].image)
    with pytest.raises(ControlError, match="not one of snapshot"):
        hub.request({"action": "format-disk"})
