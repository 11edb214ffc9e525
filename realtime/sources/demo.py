"""The demo's moving picture: animals walk across a scene whose background switches between
savanna and snow. `gradcam-live --demo` shows it to the biased and the fair model side by side."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from realtime.sources import scenes
from realtime.sources.pacing import Pacer


@dataclass(frozen=True)
class Timeline:
    """The demo's choreography: one animal crosses at a time; the background switches on its own beat."""

    size: tuple[int, int] = (640, 480)  # width, height
    fps: float = 30.0
    crossing_frames: int = 150  # frames for one animal to walk across
    background_frames: int = 110  # frames between background switches
    seed: int = 3


def animal_at(timeline: Timeline, index: int) -> tuple[int, scenes.Pose]:
    """Which animal is walking at frame `index`, and where."""
    width, height = timeline.size
    crossing, step = divmod(index, timeline.crossing_frames)
    label = crossing % 2
    size = (0.45 if label == scenes.ELEPHANT else 0.4) * height
    margin = (0.85 if label == scenes.ELEPHANT else 0.3) * size
    direction = 1 if (crossing // 2) % 2 == 0 else -1
    progress = step / max(1, timeline.crossing_frames - 1)
    x = margin + progress * (width - 2 * margin)
    cx = x if direction > 0 else width - x
    cy = height * (0.62 if label == scenes.ELEPHANT else 0.68)
    return label, scenes.Pose(cx=cx, cy=cy, height=size, facing=direction, phase=index * 0.45)


def background_at(timeline: Timeline, index: int) -> int:
    return (index // timeline.background_frames) % 2


class DemoScene:
    """Frame `index` of the demo with its ground truth; backgrounds are drawn once and reused."""

    def __init__(self, timeline: Timeline | None = None) -> None:
        self.timeline = timeline or Timeline()
        rng = np.random.default_rng(self.timeline.seed)
        width, height = self.timeline.size
        self.backgrounds = [scenes.background(kind, (height, width), rng) for kind in (scenes.SAVANNA, scenes.SNOW)]

    def frame(self, index: int) -> scenes.Scene:
        label, pose = animal_at(self.timeline, index)
        bg = background_at(self.timeline, index)
        rng = np.random.default_rng(self.timeline.seed)  # same grey for the same elephant every frame
        image, mask = scenes.draw_animal(self.backgrounds[bg], label, pose, rng)
        ys, xs = np.nonzero(mask)
        box = (int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1) if len(xs) else (0, 0, 0, 0)
        return scenes.Scene(image=image, mask=mask, box=box, label=label, background=bg)


class DemoSource:
    """The demo as a live 30 FPS camera: paced by the clock, so a slow model drops frames as with a webcam."""

    live = True
    name = "demo"

    def __init__(
        self,
        timeline: Timeline | None = None,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
        paced: bool = True,
    ) -> None:
        self.scene = DemoScene(timeline)
        self.pacer = Pacer(self.scene.timeline.fps if paced else 0.0, clock, sleep)
        self.index = 0

    @property
    def fps(self) -> float:
        return self.scene.timeline.fps

    def open(self) -> None:
        self.index = 0
        self.pacer.restart()

    def read(self) -> np.ndarray | None:
        self.pacer.wait(self.index)
        image = self.scene.frame(self.index).image
        self.index += 1
        return image

    def close(self) -> None:
        pass
