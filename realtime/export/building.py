"""From a forward graph to a written Grad-CAM graph: target, head, backward, passes, checks.

The importers stop at an ONNX forward graph; this is the one road after it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from realtime import contract
from realtime.export import checks, contract_graph, passes, selfcheck
from realtime.export.backward import SUPPORTED_OPS
from realtime.export.config import ExportConfig, ExportError, preprocess_spec, resolve_labels, self_check_inputs
from realtime.export.derivatives import RuleError
from realtime.export.head import GraphIndex, Head, HeadError, candidates, default_target, extract
from realtime.export.importers import ForwardGraph
from realtime.export.shapes import static_shapes
from realtime.export.writing import save_checked
from realtime.progress import Progress


class SelfCheckError(RuntimeError):
    """The built graph is invalid or disagrees with finite differences; no file was written."""


@dataclass(frozen=True)
class Built:
    check: selfcheck.SelfCheck | None
    num_classes: int
    layer: str
    input_size: tuple[int, int]


@dataclass(frozen=True)
class Layer:
    """A tensor that can be explained, for --list-layers."""

    name: str
    op_type: str
    dims: tuple[int, ...]
    default: bool


def list_layers(forward: ForwardGraph) -> list[Layer]:
    """Candidate target tensors, in graph order, the default marked."""
    shapes = static_shapes(forward.model)
    index = GraphIndex.of(forward.model.graph)
    chosen = forward.layer or default_target(forward.model, index, shapes)
    return [
        Layer(name, index.producer[name].op_type, shapes[name], name == chosen)
        for name in candidates(forward.model, index, shapes)
    ]


def find_head(forward: ForwardGraph, target: str | None, target_layout: str | None = None) -> Head:
    """The head after `target` (default: the last feature map before the pooling), or advice on what works."""
    model = forward.model
    shapes = static_shapes(model)
    index = GraphIndex.of(model.graph)
    if target is None and forward.layer is not None:
        target_layout = forward.layer_layout
    target = target or forward.layer or default_target(model, index, shapes)
    try:
        return extract(model, target, forward.layout, shapes, SUPPORTED_OPS, target_layout)
    except HeadError as exc:
        raise HeadError(f"{exc}. {_suggestion(forward, target, shapes, index)}") from exc


def _suggestion(forward: ForwardGraph, failed: str, shapes: Any, index: GraphIndex) -> str:
    if forward.layer is not None:  # Keras: tensor names mean nothing to the user, layer names do
        return f"Pick a Keras layer after that node with --layer NAME; supported head ops: {', '.join(SUPPORTED_OPS)}"
    found = candidates(forward.model, index, shapes)
    later = found[found.index(failed) + 1 :] if failed in found else found
    for name in later:
        try:
            extract(forward.model, name, forward.layout, shapes, SUPPORTED_OPS)
        except HeadError:
            continue
        return f"--layer {name} works; supported head ops: {', '.join(SUPPORTED_OPS)}"
    return f"No later feature map has a supported head; supported head ops: {', '.join(SUPPORTED_OPS)}"


def metadata(
    labels: Sequence[str], layers: Sequence[str], preprocessing: str, gradients: str, name: str, version: str
) -> dict[str, str]:
    more = {contract.META_LAYERS: json.dumps(list(layers))} if version != contract.CONTRACT_VERSION else {}
    return {
        contract.META_CONTRACT: version,
        **more,
        contract.META_LABELS: json.dumps(list(labels)),
        contract.META_LAYER: layers[0],
        contract.META_PREPROCESSING: preprocessing,
        contract.META_GRADIENTS: gradients,
        contract.META_MODEL_NAME: name,
        contract.META_PRECISION: "fp32",
    }


def _heads(forward: ForwardGraph, config: ExportConfig) -> tuple[list[Head], Head | None]:
    """The head of every layer asked for (the first one gives version 1's outputs), and the input's."""
    keras = config.onnx is None
    try:
        heads = [find_head(forward, None if keras else config.layer)]
        heads += [find_head(forward, name, forward.layer_layout if keras else None) for name in config.more_layers]
        input_head = find_head(forward, forward.input_name, forward.layout) if config.input_gradients else None
        # the plain backward reaches the input only for saliency; guided backpropagation is its own pass
    except HeadError as exc:
        raise ExportError(str(exc)) from exc
    return heads, input_head


def build_and_write(forward: ForwardGraph, config: ExportConfig, output: Path, progress: Progress) -> Built:
    """Build the contract graph for `config`, check it, and move it to `output`."""
    with progress.step(f"building the Grad-CAM graph ({config.gradients} gradients)"):
        passes.noop_pools_to_identity(forward.model)
        heads, input_head = _heads(forward, config)
        head = heads[0]
        labels = resolve_labels(config, head.num_classes)
        layer = config.layer or forward.layer or head.target
        layers = [layer, *config.more_layers]
        prep_name, prep = preprocess_spec(config)
        version = contract.CONTRACT_VERSION_2 if len(heads) > 1 or input_head else contract.CONTRACT_VERSION
        meta = metadata(labels, layers, prep_name, config.gradients, forward.name, version)
        model = forward.model
        # a rule can still refuse a node's settings (an overlapping pool); the advice must come from the
        # graph as imported, since building rewrites it in place
        advice = _suggestion(forward, head.target, head.shapes, GraphIndex.of(model.graph))
        try:
            contract_graph.build(
                model, heads, forward.input_name, forward.layout, prep, config.gradients, meta, input_head,
                config.input_gradients,
            )  # fmt: skip
        except RuleError as exc:
            raise ExportError(f"{exc}. {advice}") from exc
        passes.finish(model)
    size = _input_size(forward)

    def check(path: Path) -> selfcheck.SelfCheck | None:
        try:
            checks.check_portable(path)
        except checks.GraphCheckError as exc:
            raise SelfCheckError(str(exc)) from exc
        if not config.self_check or config.gradients == contract.GRADIENTS_NONE:
            return None
        with progress.step("self-check: the backward against float64 finite differences of the head"):
            image, targets = self_check_inputs(len(labels), size)
            outputs = checks.run_onnx(path, image, targets)
            reports = []
            for i, layer_head in enumerate(heads):  # every layer's outputs against its own head
                named = {k: outputs[contract.layer_output(k, i)] for k in contract.LAYER_OUTPUTS if k in outputs}
                try:
                    report = selfcheck.self_check(model, layer_head, {**outputs, **named})
                except checks.GraphCheckError as exc:
                    raise SelfCheckError(str(exc)) from exc
                if not report.ok():
                    where = f" at {layers[i]!r}" if len(heads) > 1 else ""
                    raise SelfCheckError(f"the graph disagrees with finite differences{where}: {report.describe()}")
                reports.append(report)
            return reports[0]

    report = save_checked(model, output, check)
    return Built(report, head.num_classes, layer, size)


def _input_size(forward: ForwardGraph) -> tuple[int, int]:
    value = next(v for v in forward.model.graph.input if v.name == contract.INPUT_IMAGE)
    dims = value.type.tensor_type.shape.dim
    return int(dims[1].dim_value), int(dims[2].dim_value)
