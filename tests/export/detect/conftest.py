"""YOLOv8n, YOLO11n and YOLO26n as Ultralytics builds them offline (seeded random weights) and exports them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.helpers.optional import needs

SIZE = 320
ARCHS = ("yolov8n", "yolo11n", "yolo26n")
EXPORT_OPTIONS = {  # each model once, each way `yolo export format=onnx` writes a file
    "yolov8n": {},
    "yolo11n": {"dynamic": True},  # a dynamic batch and size: the size read from the file's metadata
    "yolo26n": {"simplify": True},  # through onnxslim
}


@dataclass(frozen=True)
class Yolo:
    arch: str
    model: Any  # ultralytics.YOLO, its weights as exported
    source: Path  # the file Ultralytics wrote
    graph: Path  # gradcam-export's graph of it


def seeded_yolo(arch: str) -> Any:
    """The architecture with seeded random weights, made to behave like a trained one where the tests need it:
    BatchNorm measured on the test frames, and the class logits spread (Ultralytics' own start puts every score
    near 1e-4, below any threshold; random weights alone tie every box) so that boxes of several classes come
    out with distinct scores."""
    torch = needs("torch")
    ultralytics = needs("ultralytics")
    torch.manual_seed(0)
    yolo = ultralytics.YOLO(f"{arch}.yaml")
    generator = torch.Generator().manual_seed(1)
    head = yolo.model.model[-1]
    branches = list(head.cv3) + ([] if getattr(head, "one2one_cv3", None) is None else list(head.one2one_cv3))
    offsets = [torch.randn(branch[-1].bias.shape, generator=generator) * 0.5 for branch in branches]
    _calibrate_batchnorm(yolo)
    _spread_logits(yolo, branches, offsets)
    return yolo


def frames() -> list[np.ndarray]:
    """Three real photos (scikit-image) and two demo scenes, BGR, each its own size: what the tests explain."""
    from realtime.sources import scenes

    skimage_data = needs("skimage.data")
    photos = [skimage_data.astronaut(), skimage_data.coffee(), skimage_data.chelsea()]
    demo = [s.image for s in scenes.dataset(2, seed=3, biased=False, size=(480, 640))]
    return [cv2.cvtColor(p, cv2.COLOR_RGB2BGR) for p in photos] + demo


def _photos() -> Any:
    """The test frames letterboxed as the graph sees them, RGB in [0, 1] as Ultralytics feeds its model."""
    from realtime.sources.fitting import letterbox

    torch = needs("torch")
    fitted = [letterbox(frame, (SIZE, SIZE))[0][..., ::-1] for frame in frames()]
    return torch.stack([torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1).float() / 255 for f in fitted])


def _calibrate_batchnorm(yolo: Any) -> None:
    """BatchNorm's statistics measured on the test frames: with their initial ones (mean 0, variance 1) a random
    YOLO11's
    activations shrink layer by layer to 1e-9 at the head, where float32 maps mean nothing."""
    torch = needs("torch")
    norms = [m for m in yolo.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average: one pass sets them
    yolo.model.train()
    with torch.no_grad():
        yolo.model(_photos())
    yolo.model.eval()


def _spread_logits(yolo: Any, branches: list, offsets: list) -> None:
    """Scale each class convolution and set its bias so that about one logit in 2000 over the test frames'
    anchors clears the 0.25 threshold (give or take a random offset per class), and none saturates the
    sigmoid: with random weights the logits barely move, every box ties, and NMS may keep any of the tied
    ones."""
    torch = needs("torch")
    measured: dict[int, Any] = {}

    def measure(n: int) -> Any:
        def hook(module: Any, args: Any, out: Any) -> None:
            measured.setdefault(n, (out - module.bias[None, :, None, None]).transpose(0, 1).flatten(1))  # [C, B*h*w]

        return hook

    hooks = [branch[-1].register_forward_hook(measure(n)) for n, branch in enumerate(branches)]
    with torch.no_grad():
        yolo.model.eval()(_photos())
    for hook in hooks:
        hook.remove()
    mean = {n: raw.mean(1) for n, raw in measured.items()}
    std = {n: raw.std(1).clamp(min=1e-12) for n, raw in measured.items()}
    z = torch.cat([((raw - mean[n][:, None]) / std[n][:, None]).flatten() for n, raw in measured.items()])
    threshold = float(torch.quantile(z[torch.randperm(len(z), generator=torch.Generator().manual_seed(2))[:1_000_000]],
                                     0.9995))  # fmt: skip
    gain = 4.0 / max(float(z.max()) - threshold, 1e-6)  # the highest logit about 3 (0.95): no score saturates
    for n, branch in enumerate(branches):
        branch[-1].weight.data *= (gain / std[n])[:, None, None, None]
        branch[-1].bias.data.copy_(offsets[n] - gain * (mean[n] / std[n] + threshold) - 1.1)


@pytest.fixture(scope="module", params=ARCHS)
def yolo(request, tmp_path_factory) -> Yolo:
    from realtime.export.pipeline import ExportConfig, export

    arch = request.param
    folder = tmp_path_factory.mktemp(arch)
    model = seeded_yolo(arch)
    here = Path.cwd()
    os.chdir(folder)  # Ultralytics writes a yaml-built model's file into the working folder
    try:
        source = folder / Path(model.export(format="onnx", imgsz=SIZE, verbose=False, **EXPORT_OPTIONS[arch])).name
    finally:
        os.chdir(here)
    graph = export(ExportConfig(onnx=source, output=folder / f"{arch}_gradcam_detector.onnx", quiet=True)).output
    return Yolo(arch, model, source, graph)
