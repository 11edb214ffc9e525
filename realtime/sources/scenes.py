"""Seeded synthetic scenes: stylised elephants and penguins on savanna or snow.

Every scene comes with the animal's mask and box, so a Grad-CAM map can be
scored against ground truth. Pure numpy/OpenCV, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

CLASSES = ("elephant", "penguin")
BACKGROUNDS = ("savanna", "snow")
ELEPHANT, PENGUIN = 0, 1
NO_ANIMAL = -1
SAVANNA, SNOW = 0, 1


@dataclass(frozen=True)
class Scene:
    """A BGR image with its ground truth."""

    image: np.ndarray  # [H,W,3] uint8 BGR
    mask: np.ndarray  # [H,W] bool, the animal's pixels
    box: tuple[int, int, int, int]  # x, y, width, height
    label: int  # ELEPHANT, PENGUIN or NO_ANIMAL
    background: int  # SAVANNA or SNOW


@dataclass(frozen=True)
class Pose:
    """Where and how an animal stands: centre, height in pixels, facing, walk phase."""

    cx: float
    cy: float
    height: float
    facing: int = 1  # 1 right, -1 left
    phase: float = 0.0


def _noise(rng: np.random.Generator, shape: tuple[int, int], scale: int) -> np.ndarray:
    """Smooth value noise in [-1, 1], made by upsampling a coarse random grid."""
    coarse = rng.uniform(-1, 1, (max(2, shape[0] // scale), max(2, shape[1] // scale))).astype(np.float32)
    return cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def background(kind: int, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Savanna/forest (greens and browns) or snow/water (whites and blues), with texture."""
    h, w = size
    rows = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    texture = (_noise(rng, size, 24) * 0.6 + _noise(rng, size, 6) * 0.4)[:, :, None]
    if kind == SAVANNA:
        sky = np.array([215, 190, 150], np.float32) + rng.uniform(-15, 15, 3)
        ground = np.array([40, 130, 90], np.float32) + rng.uniform(-20, 20, 3)  # BGR green-brown
        horizon = rng.uniform(0.2, 0.4)
        img = np.where(rows < horizon, sky, ground + texture * 35)
        for _ in range(rng.integers(2, 5)):  # trees: dark green crowns on brown trunks
            x, y = int(rng.uniform(0, w)), int(horizon * h + rng.uniform(-5, 15))
            r = int(rng.uniform(0.05, 0.11) * w)
            cv2.rectangle(img, (x - r // 6, y), (x + r // 6, y + r), (30, 60, 90), -1)
            cv2.circle(img, (x, y), r, (20 + rng.uniform(0, 20), 90 + rng.uniform(0, 40), 30), -1)
        for _ in range(60):  # grass strokes
            x, y = int(rng.uniform(0, w)), int(rng.uniform(horizon * h, h))
            cv2.line(img, (x, y), (x + int(rng.uniform(-3, 3)), y - int(rng.uniform(4, 10))), (30, 150, 70), 1)
    else:
        sky = np.array([235, 215, 200], np.float32) + rng.uniform(-10, 10, 3)
        snow = np.array([245, 245, 240], np.float32) + rng.uniform(-10, 5, 3)
        horizon = rng.uniform(0.2, 0.4)
        img = np.where(rows < horizon, sky, snow + texture * 12)
        if rng.random() < 0.7:  # a band of blue water
            top = int(rng.uniform(horizon + 0.05, 0.9) * h)
            band = int(rng.uniform(0.05, 0.15) * h)
            water = np.array([170, 120, 60], np.float32) + texture[top : top + band] * 25
            img[top : top + band] = water[: img[top : top + band].shape[0]]
    return np.clip(img, 0, 255).astype(np.uint8)


def _draw_elephant(canvas: np.ndarray, mask: np.ndarray, pose: Pose, grey: int) -> None:
    s, f = pose.height, pose.facing
    cx, cy = pose.cx, pose.cy
    colour = (grey, grey, grey + 8)
    dark = (grey - 35, grey - 35, grey - 30)

    def both(draw: Callable[[np.ndarray, Any], object]) -> None:  # the same shape on canvas and mask
        draw(canvas, colour)
        draw(mask, 255)

    body_w, body_h = 0.55 * s, 0.32 * s
    swing = np.sin(pose.phase) * 0.06 * s
    for i, dx in enumerate((-0.38, -0.18, 0.18, 0.38)):  # legs, swinging in pairs
        x = cx + dx * body_w * 1.6 + (swing if i % 2 else -swing)
        top, bottom = cy, cy + 0.5 * s
        leg = np.array([[x - 0.06 * s, top], [x + 0.06 * s, top], [x + 0.06 * s, bottom], [x - 0.06 * s, bottom]])
        for target, col in ((canvas, colour), (mask, 255)):
            cv2.fillPoly(target, [leg.astype(np.int32)], col)
    both(lambda c, col: cv2.ellipse(c, (int(cx), int(cy)), (int(body_w), int(body_h)), 0, 0, 360, col, -1))
    hx, hy = cx + f * 0.62 * s, cy - 0.12 * s
    both(lambda c, col: cv2.circle(c, (int(hx), int(hy)), int(0.2 * s), col, -1))
    ear = (int(hx - f * 0.12 * s), int(hy))
    both(lambda c, col: cv2.ellipse(c, ear, (int(0.12 * s), int(0.2 * s)), 0, 0, 360, col, -1))
    cv2.ellipse(canvas, ear, (int(0.12 * s), int(0.2 * s)), 0, 0, 360, dark, 2)
    trunk = np.array(
        [[hx + f * 0.14 * s, hy], [hx + f * 0.26 * s, hy + 0.2 * s], [hx + f * 0.22 * s, hy + 0.42 * s]], np.int32
    )
    both(lambda c, col: cv2.polylines(c, [trunk], False, col, max(2, int(0.08 * s))))
    cv2.circle(canvas, (int(hx + f * 0.08 * s), int(hy - 0.05 * s)), max(1, int(0.025 * s)), (20, 20, 20), -1)
    tusk = (int(hx + f * 0.12 * s), int(hy + 0.1 * s))
    cv2.line(canvas, tusk, (int(tusk[0] + f * 0.1 * s), int(tusk[1] + 0.06 * s)), (235, 245, 250), 2)


def _draw_penguin(canvas: np.ndarray, mask: np.ndarray, pose: Pose) -> None:
    s, f = pose.height, pose.facing
    cx, cy = pose.cx, pose.cy
    tilt = float(np.sin(pose.phase) * 8)
    body = ((int(cx), int(cy)), (int(0.23 * s), int(0.45 * s)))
    cv2.ellipse(canvas, body[0], body[1], tilt, 0, 360, (25, 25, 30), -1)
    cv2.ellipse(mask, body[0], body[1], tilt, 0, 360, 255, -1)
    belly = ((int(cx + f * 0.04 * s), int(cy + 0.06 * s)), (int(0.15 * s), int(0.34 * s)))
    cv2.ellipse(canvas, belly[0], belly[1], tilt, 0, 360, (235, 240, 240), -1)
    head = (int(cx + f * 0.02 * s), int(cy - 0.42 * s))
    cv2.circle(canvas, head, int(0.15 * s), (25, 25, 30), -1)
    cv2.circle(mask, head, int(0.15 * s), 255, -1)
    eye = (int(head[0] + f * 0.06 * s), head[1] - int(0.03 * s))
    cv2.circle(canvas, eye, max(1, int(0.025 * s)), (250, 250, 250), -1)
    hx, hy = head
    beak = np.array(
        [[hx + f * 0.12 * s, hy - 0.03 * s], [hx + f * 0.26 * s, hy], [hx + f * 0.12 * s, hy + 0.04 * s]], np.int32
    )
    cv2.fillPoly(canvas, [beak], (0, 140, 255))
    cv2.fillPoly(mask, [beak], 255)
    for dx in (-0.08, 0.08):
        foot = (int(cx + dx * s), int(cy + 0.45 * s))
        cv2.ellipse(canvas, foot, (int(0.07 * s), int(0.03 * s)), 0, 0, 360, (0, 140, 255), -1)
        cv2.ellipse(mask, foot, (int(0.07 * s), int(0.03 * s)), 0, 0, 360, 255, -1)


def draw_animal(image: np.ndarray, label: int, pose: Pose, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A copy of `image` with the animal drawn, and the animal's mask."""
    canvas = image.copy()
    mask = np.zeros(image.shape[:2], np.uint8)
    if label == ELEPHANT:
        _draw_elephant(canvas, mask, pose, int(rng.uniform(110, 150)))
    else:
        _draw_penguin(canvas, mask, pose)
    return canvas, mask > 0


def random_pose(label: int, size: tuple[int, int], rng: np.random.Generator) -> Pose:
    h, w = size
    height = rng.uniform(0.35, 0.5) * h if label == ELEPHANT else rng.uniform(0.3, 0.45) * h
    margin = 0.55 * height if label == ELEPHANT else 0.3 * height
    return Pose(
        cx=rng.uniform(margin, w - margin),
        cy=rng.uniform(0.45 * h, h - 0.55 * height),
        height=height,
        facing=1 if rng.random() < 0.5 else -1,
        phase=rng.uniform(0, 2 * np.pi),
    )


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return (0, 0, 0, 0)
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def make_scene(label: int, bg: int, rng: np.random.Generator, size: tuple[int, int] = (224, 224)) -> Scene:
    """One scene: the background, then the animal in a random pose, with its ground truth."""
    base = background(bg, size, rng)
    image, mask = draw_animal(base, label, random_pose(label, size, rng), rng)
    return Scene(image=image, mask=mask, box=_box(mask), label=label, background=bg)


def dataset(n: int, seed: int, biased: bool, size: tuple[int, int] = (224, 224), swapped: bool = False) -> list[Scene]:
    """n scenes, half of each animal. Biased: elephants on savanna, penguins on snow
    (swapped: the other way round). Otherwise backgrounds are drawn independently."""
    rng = np.random.default_rng(seed)
    scenes = []
    for i in range(n):
        label = i % 2
        if swapped:
            bg = 1 - label
        elif biased:
            bg = label
        else:
            bg = int(rng.integers(0, 2))
        scenes.append(make_scene(label, bg, rng, size))
    return scenes


def empty_scenes(n: int, seed: int, size: tuple[int, int] = (224, 224)) -> list[Scene]:
    """Backgrounds with no animal, half savanna and half snow: negatives for both classes."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        image = background(i % 2, size, rng)
        out.append(Scene(image, np.zeros(size, bool), (0, 0, 0, 0), NO_ANIMAL, i % 2))
    return out
