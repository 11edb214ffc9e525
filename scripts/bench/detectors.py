"""Detectors: what a box's Grad-CAM inside the graph costs against the plain file Ultralytics wrote.

YOLOv8n built from its yaml (random weights, its class biases spread so that boxes come out) and exported
by Ultralytics at 640x640; gradcam-export --onnx of that file; batch 1, CPU, timed in alternation:
- the plain file (float NCHW input, no NMS): what `yolo export format=onnx` gives a user, alone and with the
  pre- and post-processing a user runs around it for the same boxes (the goals' reference: the Grad-CAM graph
  takes the uint8 frame and does both inside);
- the Grad-CAM graph (uint8 input, letterboxed frame, NMS and K boxes' gradients, weights and maps) at K = 1
  and K = 10;
- beside it, Ultralytics' own `visualize=True` (LayerCAM per prediction, one backward pass each, in PyTorch)
  against its own plain `predict`, on the same picture.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from scripts.bench.timing import alternate, median_ms

SIZE = 640
GOALS = {"K=10": 1.15, "K=1": 1.05}


def _yolo(folder: Path) -> tuple[Any, Path]:
    import torch
    from ultralytics import YOLO

    torch.manual_seed(0)
    model = YOLO("yolov8n.yaml")
    generator = torch.Generator().manual_seed(1)
    for branch in model.model.model[-1].cv3:
        bias = branch[-1].bias
        bias.data.copy_(torch.randn(bias.shape, generator=generator) * 1.5 - 1.0)
    here = Path.cwd()
    os.chdir(folder)  # Ultralytics writes a yaml-built model's file into the working folder
    try:
        source = folder / Path(model.export(format="onnx", imgsz=SIZE, verbose=False)).name
    finally:
        os.chdir(here)
    return model, source


def _picture() -> np.ndarray:
    import cv2
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def measure(folder: Path, rounds: int) -> dict[str, Any]:
    import onnxruntime as ort

    from realtime import contract
    from realtime.engines.providers import cpu_session_options
    from realtime.export.pipeline import ExportConfig, export
    from realtime.sources.fitting import letterbox

    model, source = _yolo(folder)
    graph = export(ExportConfig(onnx=source, output=folder / "yolov8n_gradcam_detector.onnx", quiet=True)).output
    image, _ = letterbox(_picture(), (SIZE, SIZE))
    plain = ort.InferenceSession(str(source), cpu_session_options(), providers=["CPUExecutionProvider"])
    ours = ort.InferenceSession(str(graph), cpu_session_options(), providers=["CPUExecutionProvider"])
    x = np.ascontiguousarray(image[None, ..., ::-1].transpose(0, 3, 1, 2), np.float32) / 255
    plain_feeds = {plain.get_inputs()[0].name: x}

    def feeds(k: int) -> dict[str, np.ndarray]:
        return {contract.INPUT_IMAGE: image[None], contract.INPUT_TARGETS: np.full((1, k), -1, np.int64)}

    explained = ours.run([contract.OUT_EXPLAINED, contract.OUT_COUNT], feeds(10))
    times = alternate({
        "plain file": lambda: plain.run(None, plain_feeds),
        "plain file, with its pre- and post-processing": lambda: _plain_pipeline(plain, image),
        "K=1": lambda: ours.run(None, feeds(1)),
        "K=10": lambda: ours.run(None, feeds(10)),
    }, rounds)  # fmt: skip
    pipeline = times["plain file, with its pre- and post-processing"]
    report: dict[str, Any] = {
        "ms": times,
        "ratio": {k: times[k] / pipeline for k in GOALS},
        "ratio to the model call alone": {k: times[k] / times["plain file"] for k in GOALS},
        "boxes kept": int(explained[1][0]),
        "boxes explained at K=10": int((explained[0][0] >= 0).sum()),
        "ultralytics": _ultralytics_visualize(model, image, folder, max(3, rounds // 3)),
    }
    return report


def _plain_pipeline(plain: Any, image: np.ndarray, conf: float = 0.25, iou: float = 0.7) -> np.ndarray:
    """What a user of the plain file runs per frame for the same answer as the Grad-CAM graph's boxes: the
    letterboxed BGR frame to float RGB NCHW, the call, then threshold and class-aware NMS (OpenCV's)."""
    import cv2

    x = np.ascontiguousarray(image[None, ..., ::-1].transpose(0, 3, 1, 2), np.float32) / 255
    out = plain.run(None, {plain.get_inputs()[0].name: x})[0][0]  # [4 + C, A]
    scores = out[4:].max(0)
    keep = np.flatnonzero(scores > conf)
    classes = out[4:, keep].argmax(0)
    xywh = out[:4, keep].T.copy()
    xywh[:, :2] -= xywh[:, 2:] / 2
    chosen = cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores[keep].tolist(), classes.tolist(), conf, iou, top_k=32)
    return keep[np.asarray(chosen, np.int64).reshape(-1)]


def _ultralytics_visualize(model: Any, image: np.ndarray, folder: Path, rounds: int) -> dict[str, Any]:
    """Ultralytics' predict with and without visualize=True (it writes its pictures under `folder`)."""
    here = Path.cwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(None):
            options = {"imgsz": SIZE, "verbose": False, "save": False, "project": str(folder), "exist_ok": True}
            model.predict(image, **options)  # warm up both
            model.predict(image, visualize=True, **options)
            samples: dict[str, list[float]] = {"predict": [], "visualize=True": []}
            for _ in range(rounds):
                for name, extra in (("predict", {}), ("visualize=True", {"visualize": True})):
                    start = time.perf_counter()
                    found = model.predict(image, **options, **extra)
                    samples[name].append(time.perf_counter() - start)
    finally:
        os.chdir(here)
    ms = {name: median_ms(values) for name, values in samples.items()}
    return {"ms": ms, "ratio": ms["visualize=True"] / ms["predict"], "predictions": len(found[0].boxes)}


def goals(report: dict[str, Any]) -> dict[str, str]:
    from scripts.bench.timing import goal

    return {f"YOLOv8n Grad-CAM graph {k} vs the plain file with its pre- and post-processing": goal(
                report["ratio"][k], limit)
            for k, limit in GOALS.items()}  # fmt: skip


def table(report: dict[str, Any]) -> list[str]:
    ms, theirs = report["ms"], report["ultralytics"]
    return [
        f"| YOLOv8n at {SIZE}x{SIZE}, batch 1, CPU | ms (median) | ratio |",
        "|---|---|---|",
        f"| plain file Ultralytics wrote, the call alone (no NMS) | {ms['plain file']:.1f} | "
        f"{ms['plain file'] / ms['plain file, with its pre- and post-processing']:.3f} |",
        f"| the same file with its pre- and post-processing (to float NCHW; threshold, OpenCV's NMS) | "
        f"{ms['plain file, with its pre- and post-processing']:.1f} | 1.00 |",
        f"| Grad-CAM graph, K = 1 box explained | {ms['K=1']:.1f} | {report['ratio']['K=1']:.3f} |",
        f"| Grad-CAM graph, K = 10 boxes explained ({report['boxes explained at K=10']} of "
        f"{report['boxes kept']} kept) | {ms['K=10']:.1f} | {report['ratio']['K=10']:.3f} |",
        f"| Ultralytics `predict` (PyTorch) | {theirs['ms']['predict']:.1f} | 1.00 |",
        f"| Ultralytics `predict(visualize=True)` ({theirs['predictions']} predictions) | "
        f"{theirs['ms']['visualize=True']:.1f} | {theirs['ratio']:.2f} |",
    ]
