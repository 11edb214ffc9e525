"""From a forward graph and its targets to the contract graph in memory: heads, backward, outputs, passes.

Nothing here knows which importer made the graph: the targets (targets.choose) already say
which tensors to explain and in which layout.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

import onnx

from realtime import contract
from realtime.export import contract_graph
from realtime.export.autodiff.head import Head, extract
from realtime.export.config import ExportConfig, ExportError, preprocess_spec, resolve_labels
from realtime.export.graph import passes
from realtime.export.graph.index import GraphIndex
from realtime.export.graph.shapes import static_shapes
from realtime.export.importers import ForwardGraph
from realtime.export.importers.passes.normalize import noop_pools_to_identity
from realtime.export.ops import SUPPORTED_OPS
from realtime.export.ops.context import RuleError
from realtime.export.targets import HeadError, Target, Targets, candidates
from realtime.export.targets.tokens import expose_grid


@dataclass(frozen=True)
class Assembled:
    """The contract graph, not yet written, and what the checks and the summary need."""

    model: onnx.ModelProto
    heads: tuple[Head, ...]  # one per explained layer, the first giving version 1's outputs
    layers: tuple[str, ...]  # their names as the user knows them
    labels: tuple[str, ...]
    static_batch: bool  # the graph runs one image per call


def find_head(forward: ForwardGraph, target: Target) -> Head:
    """The head after `target`, or advice on a layer that works."""
    shapes = static_shapes(forward.model)
    try:
        return extract(forward.model, target.tensor, forward.layout, shapes, target.layout)
    except HeadError as exc:
        raise HeadError(f"{exc}. {suggestion(forward, target.tensor, shapes)}") from exc


def suggestion(forward: ForwardGraph, failed: str, shapes: dict[str, tuple[int, ...]]) -> str:
    """What to try instead of `failed`: the next candidate whose head this backward supports."""
    supported = ", ".join(SUPPORTED_OPS)
    if forward.layers:  # the importer named the layers (Keras): tensor names mean nothing to the user
        return f"Pick a Keras layer after that node with --layer NAME; supported head ops: {supported}"
    index = GraphIndex.of(forward.model.graph)
    found = candidates(forward, index, shapes)
    later = found[found.index(failed) + 1 :] if failed in found else found
    for name in later:
        if len(shapes[name]) != 3:
            continue  # a token layer's head exists only once its grid is in the graph
        try:
            extract(forward.model, name, forward.layout, shapes)
        except HeadError:
            continue
        return f"--layer {name} works; supported head ops: {supported}"
    return f"No later feature map has a supported head; supported head ops: {supported}"


def _on_grid(forward: ForwardGraph, target: Target) -> Target:
    """A token layer's target becomes its grid [N, h, w, C], put into the graph (tokens.expose_grid)."""
    if target.grid is None:
        return target
    channels = static_shapes(forward.model)[target.tensor][1]
    try:
        grid = expose_grid(forward.model, target.tensor, target.grid, channels)
    except ValueError as exc:
        raise HeadError(str(exc)) from exc
    return replace(target, tensor=grid)


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


def _refuse_folded(forward: ForwardGraph, heads: tuple[Head, ...]) -> None:
    """A head through tensors whose first axis is not the batch (a fold the import could not carry
    batch-first) would read that axis as the batch: refused in one line, naming the op that stopped it."""
    for head in heads:
        names = [head.target, *(name for node in head.nodes for name in node.output)]
        through = next((name for name in names if name in forward.folded), None)
        if through is not None:
            raise ExportError(
                f"between {head.target!r} and the logits the batch is folded into another axis ({through}), "
                f"which the import could not carry batch-first ({forward.folded_why}); pick a layer after it"
            )


def assemble(forward: ForwardGraph, targets: Targets, config: ExportConfig) -> Assembled:
    """Heads, backward and contract outputs for `targets`, in `forward.model` (rewritten in place)."""
    noop_pools_to_identity(forward.model)
    try:
        on_grid = tuple(_on_grid(forward, target) for target in targets.layers)
        heads = tuple(find_head(forward, target) for target in on_grid)
        input_head = find_head(forward, targets.input) if targets.input is not None else None
        # the plain backward reaches the input only for saliency; guided backpropagation is its own pass
    except HeadError as exc:
        raise ExportError(str(exc)) from exc
    _refuse_folded(forward, (*heads, *([input_head] if input_head else [])))
    head = heads[0]
    labels = resolve_labels(config, head.num_classes)
    layers = tuple(target.name for target in targets.layers)
    prep_name, prep = preprocess_spec(config)
    version = contract.CONTRACT_VERSION_2 if len(heads) > 1 or input_head else contract.CONTRACT_VERSION
    meta = metadata(labels, layers, prep_name, config.gradients, forward.name, version)
    meta[contract.META_BATCH] = "1" if forward.static_batch else "dynamic"
    model = forward.model
    # a rule can still refuse a node's settings; the advice must come from the graph as imported,
    # since building rewrites it in place
    advice = suggestion(forward, head.target, dict(head.shapes))
    try:
        contract_graph.build(
            model, list(heads), forward.input_name, forward.layout, prep, config.gradients, meta, input_head,
            config.input_gradients,
        )  # fmt: skip
    except RuleError as exc:
        raise ExportError(f"{exc}. {advice}") from exc
    passes.finish(model)
    return Assembled(model, heads, layers, tuple(labels), forward.static_batch)
