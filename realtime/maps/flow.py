"""Carry a Grad-CAM map from the frame the model saw to the frame being shown. Pure arrays, no I/O.

Dense optical flow (OpenCV's DIS, ultrafast preset) is computed at low
resolution from the shown frame back to the model's frame, and the map is
backward-warped along it: shown(y) = model(y + flow(y)). The map stays small
(flow resolution) and is upsampled only when drawn.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from realtime.maps.methods import smooth_maps

FLOW_WIDTH = 320
CUT_THRESHOLD = 20.0  # mean grey levels the flow leaves unexplained before we call it a cut


def small_gray(frame: np.ndarray, width: int = FLOW_WIDTH) -> np.ndarray:
    """The frame as a small grey image for flow: [round(H*width/W), width] uint8."""
    height = max(8, round(frame.shape[0] * width / frame.shape[1]))
    grey = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    return cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA)


class FlowEstimator:
    """DIS optical flow between two small grey frames (about 0.5 ms at 320x240 on one core)."""

    def __init__(self, preset: int = cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST) -> None:
        self._dis = cv2.DISOpticalFlow.create(preset)

    def backward(self, shown: np.ndarray, model_frame: np.ndarray) -> np.ndarray:
        """Flow [h,w,2] such that shown(y) ~ model_frame(y + flow(y))."""
        if shown.shape != model_frame.shape:
            raise ValueError(f"frames differ in size: {shown.shape} vs {model_frame.shape}")
        out = np.zeros((*shown.shape[:2], 2), np.float32)  # DIS ignores it as an initial guess by default
        return np.asarray(self._dis.calc(shown, model_frame, out))


def resize_map(cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A [h,w] map bilinearly resized to `shape` (height, width)."""
    return cv2.resize(np.asarray(cam, np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


@lru_cache(maxsize=8)
def _pixel_grid(h: int, w: int) -> np.ndarray:
    grid = np.dstack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)))
    grid.flags.writeable = False
    return grid


def sampling_map(flow: np.ndarray) -> np.ndarray:
    """Where each shown pixel samples the model frame: pixel grid + flow, [h,w,2] float32."""
    return _pixel_grid(*flow.shape[:2]) + flow


def warp(cam: np.ndarray, flow: np.ndarray, sampling: np.ndarray | None = None) -> np.ndarray:
    """Backward-warp a map given at the flow's resolution (or any size: it is resized first)."""
    h, w = flow.shape[:2]
    source = cam if cam.shape == (h, w) else resize_map(cam, (h, w))
    where = sampling_map(flow) if sampling is None else sampling
    return np.asarray(cv2.remap(source, where, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))


def centroid(weights: np.ndarray) -> tuple[float, float] | None:
    """(x, y) of the mass centre of a non-negative map or mask; None for an empty one."""
    w = np.maximum(np.nan_to_num(np.asarray(weights, np.float64)), 0.0)
    total = w.sum()
    if total <= 0:
        return None
    ys, xs = np.indices(w.shape)
    return float((xs * w).sum() / total), float((ys * w).sum() / total)


def embed(
    cam: np.ndarray, region: tuple[int, int, int, int], frame_shape: tuple[int, ...], shape: tuple[int, int]
) -> np.ndarray:
    """Place a map that covers `region` (x, y, w, h of the frame) into a full-frame map of `shape`."""
    out = np.zeros(shape, np.float32)
    sy, sx = shape[0] / frame_shape[0], shape[1] / frame_shape[1]
    x0, y0 = round(region[0] * sx), round(region[1] * sy)
    x1, y1 = max(x0 + 1, round((region[0] + region[2]) * sx)), max(y0 + 1, round((region[1] + region[3]) * sy))
    out[y0:y1, x0:x1] = resize_map(cam, (y1 - y0, x1 - x0))
    return out


class MapCarrier:
    """The newest model maps, and how to show them on any later frame.

    `update` takes the maps of a model frame (each [K,h,w], covering the whole frame);
    `carry` returns them for a later frame. Warping goes step by step: each shown frame
    takes the maps of the frame shown before it, along the flow between the two. Flow
    over one camera frame is small and DIS estimates it well; flow straight back to the
    model frame spans several frames of motion, which the ultrafast preset loses (a 5 FPS
    model on a fast animal: tracking error 0.5-0.8x the stale map's instead of 0.2-0.3x).
    With warping off the maps are shown as they were (stale). Smoothing composes with
    warping: the maps last shown are warped into the new model frame first, then blended.
    """

    def __init__(
        self,
        warp_maps: bool = True,
        width: int = FLOW_WIDTH,
        estimator: FlowEstimator | None = None,
        cut_threshold: float = CUT_THRESHOLD,
    ) -> None:
        self.warp_maps, self.width, self.cut_threshold = warp_maps, width, cut_threshold
        self.residual = 0.0
        self.estimator = estimator or FlowEstimator()
        self.index = -1  # the model frame the newest maps came from
        self.maps: list[np.ndarray] = []  # the newest model maps, at flow resolution
        self._shown_gray: np.ndarray | None = None  # the frame the maps were last placed on
        self._shown_index = -1
        self._shown: list[np.ndarray] = []

    def _warp_all(self, maps: list[np.ndarray], flow: np.ndarray, sampling: np.ndarray) -> list[np.ndarray]:
        return [np.stack([warp(m, flow, sampling) for m in stack]) for stack in maps]

    def _flow_to_shown(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flow from `gray` back to the frame shown last, and the sampling map it gives."""
        assert self._shown_gray is not None
        flow = self.estimator.backward(gray, self._shown_gray)
        return flow, sampling_map(flow)

    def update(self, frame: np.ndarray, index: int, maps: list[np.ndarray], smooth: float = 0.0) -> None:
        gray = small_gray(frame, self.width)
        small = [np.stack([resize_map(m, gray.shape) for m in stack]) for stack in maps]
        if smooth > 0.0 and self._shown_gray is not None and [m.shape for m in small] == [m.shape for m in self._shown]:
            previous = self._warp_all(self._shown, *self._flow_to_shown(gray)) if self.warp_maps else self._shown
            small = [smooth_maps(p, m, smooth) for p, m in zip(previous, small, strict=True)]
        self.index, self.maps = index, small
        self._shown_gray, self._shown_index, self._shown = gray, index, small

    def carry(self, frame: np.ndarray, index: int) -> list[np.ndarray]:
        """The maps to draw on frame `index` (same size as update's output).

        A scene cut (a switch of source, a camera swung away) leaves a residual that the
        flow cannot explain; then the maps stay as last shown rather than torn apart. A frame
        of another size or aspect is a cut too: no flow relates it to the last one.
        """
        if self._shown_gray is None:
            raise ValueError("no model maps yet")
        if not self.warp_maps:
            return self.maps
        if index == self._shown_index:
            return self._shown
        gray = small_gray(frame, self.width)
        if gray.shape != self._shown_gray.shape:
            self.residual = float("inf")
            return [np.stack([resize_map(m, gray.shape) for m in stack]) for stack in self._shown]
        flow, sampling = self._flow_to_shown(gray)
        explained = warp(self._shown_gray, flow, sampling)
        self.residual = float(cv2.norm(explained, gray, cv2.NORM_L1)) / gray.size
        if self.residual > self.cut_threshold:
            return self._shown
        self._shown_gray, self._shown_index = gray, index
        self._shown = self._warp_all(self._shown, flow, sampling)
        return self._shown
