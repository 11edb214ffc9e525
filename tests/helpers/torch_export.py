"""A torch model exported as users export it, and an exported graph's input gradient held to torch autograd."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

EXPORTERS = ("classic", "dynamo")


def as_users_export(model: Any, exporter: str, path: Path, size: int = 32) -> Path:
    """torch.onnx.export's default (the dynamo exporter, as a user writes it) or the classic one (opset 17,
    a dynamic batch), from a 1x3xSIZExSIZE example."""
    import torch

    x = torch.zeros(1, 3, size, size)
    if exporter == "dynamo":
        torch.onnx.export(model, (x,), str(path))
    else:
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "n"}, "logits": {0: "n"}})  # fmt: skip
    return path


def assert_saliency_matches_torch(
    model: Any, graph: Path, frames: np.ndarray, targets: np.ndarray
) -> dict[str, np.ndarray]:
    """The graph's logits (1e-4) and input gradient for each target column (1e-4 of its largest value) on one
    batch of frames, against the torch model's forward and autograd on the same preprocessed images; the
    graph's outputs, for further checks."""
    import torch

    from realtime.export.checks.run import run_onnx
    from realtime.export.preprocessing import PRESETS, preprocess_numpy

    got = run_onnx(graph, frames, targets)
    x = torch.from_numpy(preprocess_numpy(frames, PRESETS["torch"], "NCHW")).requires_grad_(True)
    logits = model(x)
    assert np.abs(got["logits"] - logits.detach().numpy()).max() <= 1e-4 * logits.abs().max().item()
    rows = torch.arange(len(frames))
    for k in range(targets.shape[1]):
        (grad,) = torch.autograd.grad(logits[rows, torch.from_numpy(targets[:, k])].sum(), x, retain_graph=True)
        expected = grad.numpy().transpose(0, 2, 3, 1)
        assert np.abs(got["saliency"][:, k] - expected).max() <= 1e-4 * np.abs(expected).max(), k
    return got
