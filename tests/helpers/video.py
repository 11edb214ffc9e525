"""Synthetic clips for the tests, and counting what a recording holds."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def write_video(path: Path, frames: int, size: tuple[int, int] = (640, 480), fps: float = 30.0) -> Path:
    """A moving bright disc on grey: a known synthetic scene."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
    for i in range(frames):
        frame = np.full((size[1], size[0], 3), 90, np.uint8)
        cv2.circle(frame, (60 + 12 * i % (size[0] - 120), size[1] // 2), size[1] // 8, (0, 200, 255), -1)
        writer.write(frame)
    writer.release()
    return path


def count_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def random_frames(size: tuple[int, int], n: int, seed: int = 0) -> np.ndarray:
    """`n` uint8 BGR frames of `size` (height, width) of seeded noise: model inputs for equality checks."""
    return np.random.default_rng(seed).integers(0, 256, (n, *size, 3), dtype=np.uint8)
