"""Train a small ViT by the demo's recipe, for the README's "Transformers" figure.

The fair demo set (scripts/train_demo_models.py): elephants and penguins on backgrounds independent
of the animal, empty backgrounds as negatives for both, dark blobs behind the animal, multi-label
targets. The model is timm's VisionTransformer, small enough for a 2-core CPU (patch 16, width 96,
4 blocks, 3 heads: 0.5 M parameters, a 14x14 token grid). It is exported with torch's default
exporter and then through gradcam-export --onnx like any file a user brings; the ViT and the fair
CNN explain the same demo frame side by side in docs/images/transformers.png.
    python scripts/train_demo_vit.py --figure docs/images/transformers.png   # about 9 minutes on 2 cores
    python scripts/train_demo_vit.py --quick          # a few steps: the pipeline, not the accuracy
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
from scripts.train_demo_models import add_dark_blobs, to_model_input  # noqa: E402


def build_vit(seed: int):  # type: ignore[no-untyped-def]
    import timm.models.vision_transformer as vit
    import torch

    torch.manual_seed(seed)
    return vit.VisionTransformer(img_size=224, patch_size=16, embed_dim=96, depth=4, num_heads=3,
                                 num_classes=len(scenes.CLASSES))  # fmt: skip


def train(seed: int, size: int, epochs: int, steps: int | None, out: Path) -> Path:
    import torch

    from realtime.export.pipeline import ExportConfig, export

    start = time.perf_counter()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    data = scenes.dataset(size, seed=seed + 1, biased=False) + scenes.empty_scenes(size // 3, seed=seed + 2)
    images, masks = np.stack([s.image for s in data]), np.stack([s.mask for s in data])
    x = torch.from_numpy(np.ascontiguousarray(to_model_input(add_dark_blobs(images, masks, np.random.default_rng(seed)))
                                              .transpose(0, 3, 1, 2)))  # fmt: skip
    y = torch.tensor([[float(s.label == c) for c in range(len(scenes.CLASSES))] for s in data])
    model = build_vit(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    total = epochs * (steps or -(-len(x) // 32))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=total, pct_start=0.1)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    generator = torch.Generator().manual_seed(seed)
    done = 0
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        losses = []
        for i, first in enumerate(range(0, len(x), 32)):
            if steps is not None and i >= steps:
                break
            batch = order[first : first + 32]
            target = y[batch] * 0.95 + 0.025  # label smoothing, as the CNN's
            loss = loss_fn(model(x[batch]), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if done < total - 1:
                schedule.step()
            done += 1
            losses.append(float(loss))
        print(f"[vit] epoch {epoch + 1}/{epochs}: loss {np.mean(losses):.3f}", file=sys.stderr)
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "vit.onnx"
        torch.onnx.export(model, (torch.zeros(1, 3, 224, 224),), str(source))  # torch's default exporter
        labels = Path(tmp) / "labels.txt"
        labels.write_text("\n".join(scenes.CLASSES) + "\n")
        result = export(ExportConfig(onnx=source, labels=labels, preprocessing="tf", output=out / "vit.onnx",
                                     quiet=True))  # fmt: skip
    print(f"[vit] wrote {result.output} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return result.output


def figure(vit: Path, path: Path) -> Path:
    """The fair demo CNN and the ViT on the same demo frame (an elephant on snow), side by side."""
    import cv2

    from realtime.demo.models import demo_model_paths
    from realtime.engines.local import LocalEngine
    from realtime.engines.providers import EngineOptions
    from realtime.sources.demo import DemoScene, Timeline
    from scripts.make_figures import demo_still, save

    engines = [LocalEngine(p, EngineOptions(providers="cpu", warmup=0)) for p in (demo_model_paths()["fair"], vit)]
    scene = DemoScene(Timeline())
    index = next(i for i in range(60, 400) if scene.frame(i).background == scenes.SNOW and scene.frame(i).label == 0)
    image = demo_still(index, engines, scene)
    image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    path.parent.mkdir(parents=True, exist_ok=True)
    save(path, image, f" (frame {index})")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("models"), help="where vit.onnx goes (default: models/)")
    parser.add_argument("--quick", action="store_true", help="a few steps: the pipeline, not the accuracy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", type=Path, help="also draw the README's figure here (docs/images/transformers.png)")
    args = parser.parse_args(argv)
    parser_figure = args.figure
    size, epochs, steps = (64, 1, 2) if args.quick else (2000, 12, None)
    vit = train(args.seed, size, epochs, steps, args.out)
    if parser_figure is not None:
        from scripts.make_figures import FigureError

        try:
            figure(vit, parser_figure)
        except FigureError as error:
            print(f"train_demo_vit: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
