"""In-memory sources for the tests and the measuring scripts: frames replayed at a camera's rate."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from realtime.sources.pacing import Pacer


class LoopSource:
    """A live source replaying frames forever at `fps` (0: as fast as asked), like a camera."""

    live = True

    def __init__(self, frames: Sequence[np.ndarray], fps: float = 30.0, name: str = "loop") -> None:
        self.frames, self.fps, self.name = list(frames), fps, name
        self.pacer = Pacer(fps)
        self.index = 0

    def open(self) -> None:
        self.index = 0
        self.pacer.restart()

    def read(self) -> np.ndarray:
        self.pacer.wait(self.index)
        frame = self.frames[self.index % len(self.frames)]
        self.index += 1
        return frame

    def close(self) -> None:
        pass


def synthetic_frames(n: int, size: tuple[int, int] = (640, 480)) -> list[np.ndarray]:
    """`n` frames of the demo scene, seven frames apart."""
    from realtime.sources.demo import DemoScene, Timeline

    scene = DemoScene(Timeline(size=size))
    return [scene.frame(i * 7).image for i in range(n)]


STEP = 10  # Numbered's frame i is a constant STEP * i: the picture says which frame it is


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


class Still:
    """A live 30 FPS camera showing one picture, paced as a camera delivers it."""

    live, name, fps = True, "still", 30.0

    def __init__(self, image: np.ndarray) -> None:
        self.image, self.pacer, self.index = image, Pacer(self.fps), 0

    def open(self) -> None:
        self.index = 0
        self.pacer.restart()

    def read(self) -> np.ndarray:
        self.pacer.wait(self.index)
        self.index += 1
        return self.image

    def close(self) -> None:
        pass
