"""Train the two demo models and export them through gradcam-export's --model path.

biased: elephants always on savanna, penguins always on snow.
fair:   backgrounds independent of the animal.

What "the same weights" means: on one machine a rerun gives the same weights and bit-identical outputs
(fixed seeds, TF_DETERMINISTIC_OPS; the ONNX bytes differ only in tf2onnx's node names). Across CPUs it
does not: TensorFlow's CPU kernels (oneDNN, Eigen) take ISA-specific paths (AVX-512 here, AVX2 there)
whose float rounding differs, and 4 epochs of training amplify that (a retrained fair model's logits
moved by up to 0.93 between an Intel and an AMD machine). So the models are committed, and what is
checked is behaviour, not bits: tests/test_demo.py holds the bundled models to accuracy, pointing and
map-mass thresholds, and gradcam-eval re-measures them. About 40 s per model on a 2-core CPU, with a
peak of about 8 GB of memory (the 2,000 scenes at 224x224 as float32, and their augmented copy).
    python scripts/train_demo_models.py                  # writes realtime/demo/models/{biased,fair}.onnx
    python scripts/train_demo_models.py --quick --out /tmp/demo   # a few steps, for the test suite
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")

import numpy as np

from realtime.sources import scenes

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "realtime" / "demo" / "models"
LAYER = "last_conv"


def build_model(seed: int):  # type: ignore[no-untyped-def]
    """VGG-style: conv blocks with max-pool, flatten, dense ReLU, dense. 224x224 in, 28x28 map."""
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((224, 224, 3))
    x = keras.layers.AveragePooling2D(2, name="downsample")(inp)  # 112: the scenes are smooth
    x = keras.layers.Conv2D(12, 3, padding="same", activation="relu", name="block1_conv")(x)
    x = keras.layers.MaxPooling2D(2, name="block1_pool")(x)  # 56
    x = keras.layers.Conv2D(24, 3, padding="same", activation="relu", name="block2_conv")(x)
    x = keras.layers.MaxPooling2D(2, name="block2_pool")(x)  # 28
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="block3_conv")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name=LAYER)(x)
    x = keras.layers.MaxPooling2D(2, name="last_pool")(x)  # 14
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(32, activation="relu", name="fc")(x)
    x = keras.layers.Dropout(0.3, name="drop")(x)
    out = keras.layers.Dense(len(scenes.CLASSES), name="logits")(x)
    return keras.Model(inp, out, name="demo_vgg")


def to_model_input(images: np.ndarray) -> np.ndarray:
    """The same 'tf' preprocessing the exported graph applies: BGR -> RGB in [-1, 1]."""
    return images[..., ::-1].astype(np.float32) / 127.5 - 1.0


def add_dark_blobs(images: np.ndarray, masks: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    """Black blobs behind the animal (rocks, shadows, holes) in half the training scenes.

    Without them a zeroed region reads as "penguin" (black), and RISE's deletion
    curve, which zeroes the most salient pixels, measures that artefact rather
    than the map. The animal itself is never covered, so it stays the evidence.
    """
    import cv2

    out = images.copy()
    h, w = images.shape[1:3]
    for img, original, mask in zip(out, images, masks, strict=True):
        if rng.random() >= p:
            continue
        for _ in range(int(rng.integers(1, 4))):
            centre = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
            axes = (int(rng.uniform(0.05, 0.25) * w), int(rng.uniform(0.05, 0.25) * h))
            cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, (0, 0, 0), -1)
        img[mask] = original[mask]
    return out


def train(
    name: str, biased: bool, seed: int, size: int, epochs: int, steps: int | None, out: Path,
    layers: Sequence[str] = (LAYER,), input_gradients: str = "",
) -> Path:  # fmt: skip
    """Train one demo model and export it; further `layers` and input gradients make a version 2 graph."""
    import keras

    from realtime.export.pipeline import ExportConfig, export

    start = time.perf_counter()
    data = scenes.dataset(size, seed=seed + (0 if biased else 1), biased=biased)
    if not biased:
        # the fair set adds empty backgrounds of both kinds as negatives for both animals: the
        # background then carries no label information at all. The biased set, collected the naive
        # way, has only animals, each on "its" background.
        data += scenes.empty_scenes(size // 3, seed=seed + 2)
    images, masks = np.stack([s.image for s in data]), np.stack([s.mask for s in data])
    x = to_model_input(add_dark_blobs(images, masks, np.random.default_rng(seed)))
    # multi-label targets: an empty scene is a negative for both animals, so each logit has
    # to find its own animal instead of reading "penguin" as "no elephant"
    y = np.array([[float(s.label == c) for c in range(len(scenes.CLASSES))] for s in data], np.float32)
    model = build_model(seed)
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss=keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.05),
    )
    print(f"[{name}] {len(data)} scenes ({'biased' if biased else 'fair'}), training ...", file=sys.stderr)
    model.fit(x, y, batch_size=32, epochs=epochs, steps_per_epoch=steps, shuffle=True, verbose=2)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        keras_path = Path(tmp) / f"{name}.keras"
        model.save(keras_path)
        labels = Path(tmp) / "labels.txt"
        labels.write_text("\n".join(scenes.CLASSES) + "\n")
        result = export(
            ExportConfig(
                model=keras_path,
                layer=layers[0],
                more_layers=tuple(layers[1:]),
                input_gradients=input_gradients,
                labels=labels,
                preprocessing="tf",
                gradients="full",
                output=out / f"{name}.onnx",
                quiet=True,
            )
        )
    print(f"[{name}] wrote {result.output} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return result.output


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scenes", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="64 scenes, 1 epoch of 2 steps: checks the script runs")
    parser.add_argument("--only", choices=["biased", "fair"], help="train just one of the two")
    args = parser.parse_args(argv)
    size, epochs, steps = (64, 1, 2) if args.quick else (args.scenes, args.epochs, None)
    for name, biased in (("biased", True), ("fair", False)):
        if args.only in (None, name):
            train(name, biased, args.seed, size, epochs, steps, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
