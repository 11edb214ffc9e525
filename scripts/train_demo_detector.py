"""Train the two demo detectors and export them through gradcam-export --onnx, as a user's YOLO goes.

The family: an anchor-free, YOLO-style single-stage detector written here in a few lines of torch (no
Ultralytics code or weights): a plain convolutional backbone, and at each of two strides (16, 32) a box
branch (left, top, right, bottom distances) and a class branch (two 3x3 convolutions, then the class
logits), the boxes decoded to centre and size and the class scores a Sigmoid, concatenated into one
output [N, 4 + classes, anchors]: the layout YOLOv8, YOLO11 and YOLO26 write, so it goes through the
same import. Why that family: it is what edge cameras run, and its per-cell class branch is what makes
the background shortcut visible per box.

biased: elephants always on savanna, penguins always on snow; fair: backgrounds independent of the
animal. Trained on the demo's scenes at 256x192, letterboxed to 256x256 as the runtime does it.

    python scripts/train_demo_detector.py                     # realtime/demo/models/{biased,fair}_detector.onnx
    python scripts/train_demo_detector.py --quick --out /tmp/d  # a few steps, for the test suite
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from realtime.sources import scenes  # noqa: E402
from realtime.sources.fitting import letterbox  # noqa: E402

DEFAULT_OUT = ROOT / "realtime" / "demo" / "models"
SIZE = 256  # the model's input, square
FRAME = (192, 256)  # the scenes' (height, width): the demo's 4:3
STRIDES = (16, 32)


def build_model(seed: int):  # type: ignore[no-untyped-def]
    import torch
    from torch import nn

    torch.manual_seed(seed)

    def conv(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Module:
        return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2), nn.SiLU())

    class TinyDetector(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(conv(3, 16, stride=2), conv(16, 24, stride=2), conv(24, 24),
                                      conv(24, 32, stride=2), conv(32, 32))  # fmt: skip
            self.p4 = nn.Sequential(conv(32, 48, stride=2), conv(48, 48))  # stride 16
            self.p5 = nn.Sequential(conv(48, 64, stride=2), conv(64, 64))  # stride 32
            self.box = nn.ModuleList(nn.Sequential(conv(c, 32), nn.Conv2d(32, 4, 1)) for c in (48, 64))
            self.cls = nn.ModuleList(
                nn.Sequential(conv(c, 32), conv(32, 32), nn.Conv2d(32, len(scenes.CLASSES), 1)) for c in (48, 64)
            )
            for head in self.cls:
                nn.init.constant_(head[-1].bias, -4.0)  # few cells hold an animal

        def levels(self, x):  # type: ignore[no-untyped-def]
            p4 = self.p4(self.stem(x))
            return [p4, self.p5(p4)]

        def raw(self, x):  # type: ignore[no-untyped-def]
            """Per level: distances (stride units, >= 0) [N,4,h,w] and class logits [N,C,h,w]."""
            feats = self.levels(x)
            return [(nn.functional.softplus(b(f)), c(f)) for f, b, c in zip(feats, self.box, self.cls, strict=True)]

        def forward(self, x):  # type: ignore[no-untyped-def]
            boxes, logits = [], []
            for (dist, cls), stride in zip(self.raw(x), STRIDES, strict=True):
                n, _, h, w = cls.shape
                ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
                ax, ay = (xs.float() + 0.5) * stride, (ys.float() + 0.5) * stride
                left, top, right, bottom = dist[:, 0], dist[:, 1], dist[:, 2], dist[:, 3]
                cx, cy = ax + (right - left) * stride / 2, ay + (bottom - top) * stride / 2
                size_w, size_h = (left + right) * stride, (top + bottom) * stride
                boxes.append(torch.stack([cx, cy, size_w, size_h], 1).reshape(n, 4, -1))
                logits.append(cls.reshape(n, cls.shape[1], -1))
            return torch.cat([torch.cat(boxes, 2), torch.cat(logits, 2).sigmoid()], 1)

    return TinyDetector()


def data(n: int, seed: int, biased: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Letterboxed scenes [n,256,256,3] BGR uint8, their boxes x1 y1 x2 y2 [n,4] and labels [n]."""
    images, boxes, labels = [], [], []
    for scene in scenes.dataset(n, seed, biased, size=FRAME):
        image, placement = letterbox(scene.image, (SIZE, SIZE))
        x, y, w, h = scene.box
        boxes.append([x * placement.scale_x + placement.left, y * placement.scale_y + placement.top,
                      (x + w) * placement.scale_x + placement.left,
                      (y + h) * placement.scale_y + placement.top])  # fmt: skip
        images.append(image)
        labels.append(scene.label)
    return np.stack(images), np.asarray(boxes, np.float32), np.asarray(labels, np.int64)


def targets(boxes, labels, radius: float = 1.5):  # type: ignore[no-untyped-def]
    """Per level: which cells are positives (centre within `radius` strides of the box's centre, inside it),
    their class one-hot [N,C,h,w] and distance targets [N,4,h,w] in stride units."""
    import torch

    out = []
    for stride in STRIDES:
        cells = SIZE // stride
        centres = (torch.arange(cells).float() + 0.5) * stride
        ay, ax = centres[None, :, None], centres[None, None, :]
        x1, y1, x2, y2 = (boxes[:, i, None, None] for i in range(4))
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        near = ((ax - cx).abs() < radius * stride) & ((ay - cy).abs() < radius * stride)
        inside = (ax > x1) & (ax < x2) & (ay > y1) & (ay < y2)
        positive = near & inside  # [N,h,w]
        onehot = torch.zeros(len(boxes), len(scenes.CLASSES), cells, cells)
        onehot[torch.arange(len(boxes)), labels] = positive.float()
        shape = (len(boxes), cells, cells)
        dist = torch.stack([(ax - x1).expand(shape), (ay - y1).expand(shape), (x2 - ax).expand(shape),
                            (y2 - ay).expand(shape)], 1) / stride  # fmt: skip
        out.append((positive, onehot, dist))
    return out


def train(name: str, biased: bool, seed: int, scenes_n: int, epochs: int, out: Path) -> Path:
    """Train one detector, export its forward to ONNX and its Grad-CAM graph to out/NAME_detector.onnx."""
    import torch

    from realtime.export.pipeline import ExportConfig, export

    torch.manual_seed(seed)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    images, boxes, labels = data(scenes_n, seed, biased)
    x_all = torch.from_numpy(images[..., ::-1].copy()).permute(0, 3, 1, 2).float() / 255.0  # RGB, [0, 1]
    box_all, label_all = torch.from_numpy(boxes), torch.from_numpy(labels)
    model = build_model(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = epochs * (scenes_n // 32)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, 3e-3, total_steps=max(1, steps))
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(scenes_n, generator=generator)
        for i in range(0, scenes_n - 31, 32):
            pick = order[i : i + 32]
            x = x_all[pick]
            if torch.rand(1, generator=generator).item() < 0.5:  # mirrored scenes: the boxes mirrored too
                x = x.flip(3)
                b = box_all[pick].clone()
                b[:, [0, 2]] = SIZE - b[:, [2, 0]]
            else:
                b = box_all[pick]
            loss = torch.zeros(())
            for (dist, logits), (positive, onehot, want) in zip(model.raw(x), targets(b, label_all[pick]), strict=True):
                count = positive.sum().clamp(min=1)
                bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, onehot, reduction="sum")
                loss = loss + bce / count
                mask = positive[:, None].expand_as(dist)
                loss = loss + (dist[mask] - want[mask]).abs().sum() / count
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    seconds = time.perf_counter() - start
    print(f"{name}: trained in {seconds:.0f} s, last loss {float(loss.detach()):.3f}", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / f"{name}.onnx"
        model.eval()
        torch.onnx.export(model, torch.zeros(1, 3, SIZE, SIZE), str(source), opset_version=17, dynamo=False,
                          input_names=["images"], output_names=["output0"],
                          dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}})  # fmt: skip
        labels_file = Path(tmp) / "labels.txt"
        labels_file.write_text("\n".join(scenes.CLASSES) + "\n")
        target = out / f"{name}_detector.onnx"
        export(ExportConfig(onnx=source, output=target, labels=labels_file, quiet=True, conf=0.35, iou=0.5,
                            max_boxes=8))  # fmt: skip
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--quick", action="store_true", help="a few steps on a few scenes (for the tests)")
    parser.add_argument("--only", choices=("biased", "fair"), help="train one of the two")
    args = parser.parse_args(argv)
    scenes_n, epochs = (64, 1) if args.quick else (2400, 12)
    for name, seed in (("biased", 11), ("fair", 12)):
        if args.only in (None, name):
            print(f"wrote {train(name, name == 'biased', seed, scenes_n, epochs, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
