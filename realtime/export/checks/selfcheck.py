"""The backward against float64 finite differences of the model's own head, before a graph is written.

The self-check owes nothing to how the backward was built: it re-runs the
model's own head nodes in float64 (onnxruntime, or onnx's numpy reference
evaluator) on the activations the graph returned, nudges them along random
directions and compares the change of the explained logits with what the
graph's gradients (or, for `pooled`, its channel weights) predict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from realtime import contract
from realtime.export.autodiff.head import Head
from realtime.export.checks.head_graph import HeadModel, float64_runner, head_model, side_values
from realtime.export.checks.portable import GraphCheckError
from realtime.export.graph.layout import NCHW
from realtime.export.messages import first_line


class SelfCheckError(RuntimeError):
    """The built graph is invalid or disagrees with finite differences; no file was written."""


@dataclass(frozen=True)
class SelfCheck:
    """The graph's outputs against float64 finite differences of the model's own head."""

    logits_rel: float  # the graph's logits against the float64 head on the same activations
    derivative_rel: float  # directional derivative: graph against central differences
    cam_abs: float  # the cam output against ReLU(sum_c w_c A_c) / max worked out in numpy

    def ok(self, tolerance: float = 1e-4) -> bool:
        return self.logits_rel <= tolerance and self.derivative_rel <= tolerance and self.cam_abs <= tolerance

    def describe(self) -> str:
        return (
            f"logits {self.logits_rel:.1e}, directional derivative {self.derivative_rel:.1e} (relative), "
            f"cam {self.cam_abs:.1e}"
        )


def self_check(
    head_graph: HeadModel,
    head: Head,
    outputs: dict[str, np.ndarray],
    directions: int = 2,
    seed: int = 7,
    stacked: bool = True,
    side: dict[str, np.ndarray] | None = None,
) -> SelfCheck:
    """Compare the graph's `outputs` (for one batch) with finite differences of the forward's head
    (`head_graph`, from head_graph.head_model).

    With `stacked`, the head runs once, on the activations and every nudged copy stacked along the
    batch axis; a graph whose batch is baked in (stacked=False) runs them one by one. `side` holds the
    forward's values of the tensors the head reads besides the target (head_graph.side_values).
    """
    run_head = float64_runner(head_graph, head.target, side or {})
    if any(value.dtype.kind != "f" for value in (side or {}).values()):
        stacked = False  # a reshape target computed from the batch (Swin's windows) fixes it at the test batch
    activations = outputs[contract.OUT_ACTIVATIONS].astype(np.float64)
    x0 = activations.transpose(0, 3, 1, 2) if head.layout == NCHW else activations
    classes = outputs[contract.OUT_CLASSES]
    rng = np.random.default_rng(seed)
    gradients = outputs.get(contract.OUT_GRADIENTS)
    step = 1e-8 * max(float(np.abs(x0).max()), 1.0)  # small: a ReLU kink inside the step breaks the difference
    nudges, expected = [], []
    for turn in range(directions):
        coefficients = rng.standard_normal(classes.shape)
        if gradients is not None and turn % 2 == 0:
            # any direction, through the full gradient; zero where A is zero, because a max-pool window
            # of ReLU zeros is a tie that a non-uniform nudge breaks (the function has no derivative there)
            direction_nhwc = rng.standard_normal(activations.shape) * (activations != 0)
            predicted = np.einsum("nk,nkhwc,nhwc->", coefficients, gradients.astype(np.float64), direction_nhwc)
            magnitude = np.einsum("nk,nkhwc,nhwc->", np.abs(coefficients), np.abs(gradients), np.abs(direction_nhwc))
        else:  # constant over space per channel: sees only the channel weights, and keeps every tie a tie
            per_channel = rng.standard_normal((activations.shape[0], activations.shape[3]))
            direction_nhwc = np.broadcast_to(per_channel[:, None, None, :], activations.shape)
            area = activations.shape[1] * activations.shape[2]
            weights = outputs[contract.OUT_WEIGHTS].astype(np.float64)
            predicted = area * np.einsum("nk,nkc,nc->", coefficients, weights, per_channel)
            magnitude = area * np.einsum("nk,nkc,nc->", np.abs(coefficients), np.abs(weights), np.abs(per_channel))
        direction = direction_nhwc.transpose(0, 3, 1, 2) if head.layout == NCHW else direction_nhwc
        nudges += [x0 + step * direction, x0 - step * direction]
        expected.append((coefficients, predicted, magnitude))
    try:
        if stacked:
            logits = np.asarray(run_head(np.concatenate([x0, *nudges])), np.float64).reshape(
                1 + len(nudges), len(x0), -1
            )
        else:
            logits = np.stack([np.asarray(run_head(x), np.float64) for x in (x0, *nudges)])  # [evaluation, N, classes]
    except Exception as exc:  # onnxruntime's or the reference evaluator's own errors
        raise GraphCheckError(
            f"the model's own head does not run in float64 for the self-check ({first_line(exc)})"
        ) from exc
    logits_rel = _rel(outputs[contract.OUT_LOGITS], logits[0])
    worst = 0.0
    for turn, (coefficients, predicted, magnitude) in enumerate(expected):
        up, down = (float((coefficients * np.take_along_axis(logits[1 + 2 * turn + d], classes, axis=1)).sum())
                    for d in (0, 1))  # fmt: skip
        measured = (up - down) / (2 * step)
        worst = max(worst, abs(measured - predicted) / max(magnitude, 1e-30))
    cam = np.maximum(np.einsum("nhwc,nkc->nkhw", activations, outputs[contract.OUT_WEIGHTS].astype(np.float64)), 0)
    peak = cam.max(axis=(2, 3), keepdims=True)
    cam = cam / np.where(peak > 0, peak, 1)
    return SelfCheck(logits_rel, worst, float(np.abs(outputs[contract.OUT_CAM] - cam).max()))


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-12))


def check_layers(
    path: Path, model: onnx.ModelProto, heads: Sequence[Head], layers: Sequence[str], image: np.ndarray,
    targets: np.ndarray, stacked: bool = True,
) -> SelfCheck:  # fmt: skip
    """Every explained layer's outputs of the written graph `path` against its own head; the first's report."""
    from realtime.export.checks.run import run_onnx

    try:
        outputs = run_onnx(path, image, targets)
    except Exception as exc:  # onnxruntime's own error types: the graph cannot run its test batch
        raise SelfCheckError(f"the built graph does not run on the test batch: {first_line(exc)}") from exc
    try:
        head_graphs = [head_model(model, layer_head) for layer_head in heads]  # each built once
        wanted = tuple(dict.fromkeys(name for graph in head_graphs for name in graph.side))
        side = side_values(model, wanted, image, targets)  # one forward run for every layer's side inputs
    except GraphCheckError as exc:
        raise SelfCheckError(str(exc)) from exc
    reports = []
    for i, (layer_head, head_graph) in enumerate(zip(heads, head_graphs, strict=True)):
        named = {k: outputs[contract.layer_output(k, i)] for k in contract.LAYER_OUTPUTS if k in outputs}
        mine = {name: side[name] for name in head_graph.side}
        try:
            report = self_check(head_graph, layer_head, {**outputs, **named}, stacked=stacked, side=mine)
        except GraphCheckError as exc:
            raise SelfCheckError(str(exc)) from exc
        if not report.ok():
            where = f" at {layers[i]!r}" if len(heads) > 1 else ""
            raise SelfCheckError(f"the graph disagrees with finite differences{where}: {report.describe()}")
        reports.append(report)
    return reports[0]
