"""The batch folded into a tensor's first axis ([N*X, ...]), carried as [N, X, ...] instead.

Swin's window attention runs on [N*windows, tokens, C], MobileViT's transformer on [N*pixels per
patch, patches, C] and LeViT's BatchNorm1d on [N*tokens, C]. The backward (and shape reading) take
every tensor's first axis as the batch. torch writes these folds with the batch as the outermost
factor, so [N*X, ...] and [N, X, ...] hold the same values in the same order: each op between a
fold and its unfold is told to skip the new axis, as its record's `batch_fold` role says how. A
graph with a fold some op cannot follow is left exactly as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from realtime.export.graph.index import GraphIndex, InitializerValues, attrs, drop_unused_initializers, perm
from realtime.export.graph.passes import drop_dead
from realtime.export.graph.shapes import element_types, shapes_at_batch
from realtime.export.importers.passes.batch import from_the_images
from realtime.export.ops import record


@dataclass(frozen=True)
class Unfolded:
    """What the pass did: nodes changed, or why not, and the folded tensors it found then (the backward
    refuses a head through them in one line instead of reading their first axis as the batch)."""

    changed: int
    refused: str = ""
    folded: frozenset[str] = frozenset()


@dataclass(frozen=True)
class _Edit:
    node: onnx.NodeProto
    role: str  # the record's batch_fold role, or "fold" for the Reshape that folds the batch in
    rank: int  # the folded input's rank at batch 1
    target: tuple[int, ...] = ()  # a Reshape's new target


def unfold_batch_folds(model: onnx.ModelProto) -> Unfolded:
    """Carry every folded tensor as [N, X, ...]; with a fold some op cannot follow, the graph is untouched."""
    full = shapes_at_batch(model, 1)
    edits, refused, folded = plan(model, full, element_types(model))
    if not edits:
        return Unfolded(0, refused, frozenset(folded))
    inits = InitializerValues(model.graph)
    for edit in edits:
        _apply(model.graph, edit, inits)
    del model.graph.value_info[:]
    drop_dead(model)  # the shape arithmetic that computed the old targets
    drop_unused_initializers(model)
    return Unfolded(len(edits))


def plan(
    model: onnx.ModelProto, full: Mapping[str, tuple[int, ...]], types: Mapping[str, int]
) -> tuple[list[_Edit], str, set[str]]:
    """The edits; where a fold cannot be followed, none, the node that stops it and the folded tensors."""
    graph = model.graph
    index = GraphIndex.of(graph)
    inits = InitializerValues(graph)
    images = from_the_images(model, index)
    folded: dict[str, int] = {}  # tensor -> its rank at batch 1
    sized: set[str] = set()  # arithmetic on a folded tensor's shape (torch's classic exporter's targets)
    edits: list[_Edit] = []
    for node in graph.node:
        arithmetic = all(types.get(o) == onnx.TensorProto.INT64 for o in node.output if o)
        if (record(node.op_type).reads_shape_only and node.input[0] in folded) or (
            arithmetic and any(i in sized for i in node.input) and not any(i in images for i in node.input)
        ):
            sized.update(o for o in node.output if o)
            continue
        data = [i for i in node.input if i in images]
        inside = [i for i in data if i in folded]
        if not inside:
            target = _folding_target(node, full, inits, images)
            if target is not None:
                folded[node.output[0]] = len(full[node.output[0]])
                edits.append(_Edit(node, "fold", len(full[node.input[0]]), target))
            continue
        rank = folded[inside[0]]
        if len(inside) != len(data) or any(folded[i] != rank for i in inside):
            return [], f"{node.name} mixes a folded batch with another", _region(folded, index, full)
        if not all(_broadcasts(i, rank, full) for i in node.input if i and i not in images):
            why = f"{node.name} broadcasts a constant with more axes than its folded input"
            return [], why, _region(folded, index, full)
        edit = _follow(node, rank, full, inits, inside)
        if edit is None:
            return [], f"{node.name} ({node.op_type}) cannot work on [N, X, ...]", _region(folded, index, full)
        edits.append(edit)
        if edit.role != "reshape" or full[node.output[0]][0] != 1:
            folded.update({o: len(full[o]) for o in node.output if o and o in full})
            if any(o and o not in full for o in node.output):
                return [], f"{node.name} has no static shape", _region(folded, index, full)
    if any(o.name in folded for o in graph.output):
        return [], "an output keeps the batch folded", _region(folded, index, full)
    edits, refused = _with_sized_targets(edits, sized, index, full)
    return edits, refused, _region(folded, index, full) if refused else set()


def _region(folded: Mapping[str, int], index: GraphIndex, full: Mapping[str, tuple[int, ...]]) -> set[str]:
    """The folded tensors found, and every tensor computed from them whose first axis at batch 1 is not 1 (the
    rest of the fold, past the op that stopped the walk)."""
    found, queue = set(folded), list(folded)
    while queue:
        for reader in index.consumers.get(queue.pop(), ()):
            for out in reader.output:
                if out and out not in found and full.get(out, (1,))[:1] != (1,):
                    found.add(out)
                    queue.append(out)
    return found


def _with_sized_targets(
    edits: list[_Edit], sized: set[str], index: GraphIndex, full: Mapping[str, tuple[int, ...]]
) -> tuple[list[_Edit], str]:
    """The edits, and a constant target for every other Reshape (or Expand) whose target was computed from a
    folded tensor's shape; empty where such arithmetic reaches anything else (its values change with the fold).

    Hugging Face's Swin expands its mask to [N*windows // windows, windows, ...]: at batch 1 that is
    [1, windows, ...], which broadcasts against the unfolded scores at any batch."""
    changed = {id(edit.node) for edit in edits}
    more = []
    for name in sized:
        for reader in index.consumers.get(name, ()):
            if all(o in sized for o in reader.output if o) or (id(reader) in changed and reader.input[0] != name):
                continue  # more arithmetic, or a folded tensor's Reshape whose target is replaced anyway
            after = full.get(reader.output[0])
            position = list(reader.input).index(name)
            if (record(reader.op_type).batch_fold != "reshape" and reader.op_type != "Expand") or position != 1 or \
                    after is None or after[0] != 1:  # fmt: skip
                return [], f"{reader.name} ({reader.op_type}) reads a folded tensor's shape"
            role = "pinned" if reader.op_type == "Expand" else "reshape"
            more.append(_Edit(reader, role, len(after), after if role == "pinned" else (0, *after[1:])))
            changed.add(id(reader))
    return [*edits, *more], ""


def _folding_target(
    node: onnx.NodeProto, full: Mapping[str, tuple[int, ...]], inits: InitializerValues, images: set[str]
) -> tuple[int, ...] | None:
    """[0, X, ...]: the new target of a Reshape that folds the batch of a batch-first tensor into X."""
    if record(node.op_type).batch_fold != "reshape" or node.input[0] not in images:
        return None
    before, after = full.get(node.input[0]), full.get(node.output[0])
    if before is None or after is None or before[0] != 1 or after[0] == 1:
        return None
    return (0, *after)


def _follow(
    node: onnx.NodeProto,
    rank: int,
    full: Mapping[str, tuple[int, ...]],
    inits: InitializerValues,
    folded_inputs: list[str],
) -> _Edit | None:
    """How `node` keeps working on [N, X, ...] inputs of a folded `rank`, or None where it cannot."""
    role = record(node.op_type).batch_fold
    if role == "reshape":
        after = full.get(node.output[0])
        if after is None:
            return None  # a target computed from the batch (torch's classic exporter) becomes a constant
        return _Edit(node, role, rank, (0, *after[1:]) if after[0] == 1 else (0, *after))
    if role == "transpose":
        order = perm(node)
        return _Edit(node, role, rank) if order and order[0] == 0 else None
    if role == "joins" and len([i for i in node.input if i]) != len([i for i in node.input if i in folded_inputs]):
        return None  # a constant joined to folded tensors has no [N, X, ...] form
    if role in ("axes", "joins"):
        axes = _axes(node, inits)
        return _Edit(node, role, rank) if axes is not None and all(a % rank != 0 for a in axes) else None
    if role == "channel_affine":
        if any(i not in inits for i in node.input[1:5]) or len(node.output) != 1:
            return None
        return _Edit(node, role, rank)
    return _Edit(node, role, rank) if role in ("elementwise", "product") else None


def _axes(node: onnx.NodeProto, inits: InitializerValues) -> list[int] | None:
    """The axes an axis-taking node names (None: all of them, or computed)."""
    given, known = attrs(node), record(node.op_type)
    if "axis" in given:
        return [int(given["axis"])]
    if known.default_axis is not None:
        return [known.default_axis]
    if "axes" in given:
        return [int(a) for a in given["axes"]]
    position = known.axes_input
    if not position or len(node.input) <= position or node.input[position] not in inits:
        return None
    return [int(a) for a in np.atleast_1d(inits[node.input[position]])]


def _broadcasts(name: str, rank: int, full: Mapping[str, tuple[int, ...]]) -> bool:
    """A constant broadcasts the same against [N*X, ...] and [N, X, ...] when it has no more axes than the
    folded tensor: numpy aligns the last axes. Index and shape inputs (Slice's starts) are not broadcast."""
    return name not in full or len(full[name]) <= rank


def _apply(graph: onnx.GraphProto, edit: _Edit, inits: InitializerValues) -> None:
    node = edit.node
    if edit.role in ("fold", "reshape"):
        name = f"{node.output[0]}/batch_first_target"
        graph.initializer.append(numpy_helper.from_array(np.array(edit.target, np.int64), name))
        if node.op_type == "Flatten":  # torch's classic exporter writes flatten(0, 1) as Flatten(axis=2)
            node.op_type = "Reshape"
            del node.attribute[:]
            node.input.append(name)
        node.input[1] = name
        if any(a.name == "allowzero" for a in node.attribute):  # dynamo's 1 would read the new 0 as a zero
            _set(node, "allowzero", 0)
    elif edit.role == "pinned":  # an Expand's shape at batch 1
        name = f"{node.output[0]}/batch_one_shape"
        graph.initializer.append(numpy_helper.from_array(np.array(edit.target, np.int64), name))
        node.input[1] = name
    elif edit.role == "transpose":
        order = perm(node) or []
        _set(node, "perm", [0, 1, *(p + 1 for p in order[1:])])
    elif edit.role in ("axes", "joins"):
        _shift_axes(graph, node, inits)
    elif edit.role == "channel_affine":
        _affine(graph, node, edit.rank, inits)


def _shift_axes(graph: onnx.GraphProto, node: onnx.NodeProto, inits: InitializerValues) -> None:
    """Axes counted from the front move one back (the new X axis); those counted from the end stay."""
    given = attrs(node)
    if "axis" in given:
        _set(node, "axis", given["axis"] + (given["axis"] >= 0))
    elif "axes" in given:
        _set(node, "axes", [a + (a >= 0) for a in given["axes"]])
    elif record(node.op_type).axes_input:
        position = record(node.op_type).axes_input
        axes = np.atleast_1d(inits[node.input[position]]).astype(np.int64)
        name = f"{node.output[0]}/batch_first_axes"
        graph.initializer.append(numpy_helper.from_array(axes + (axes >= 0), name))
        node.input[position] = name


def _affine(graph: onnx.GraphProto, node: onnx.NodeProto, rank: int, inits: InitializerValues) -> None:
    """BatchNormalization's channel axis (1) is not axis 1 of [N, X, C, ...]: at inference it is a scale and
    a shift per channel, written as Mul and Add with [C, 1, ...] constants that numpy aligns from the end."""
    gamma, beta, mean, variance = (inits[i].astype(np.float64) for i in node.input[1:5])
    scale = gamma / np.sqrt(variance + attrs(node).get("epsilon", 1e-5))
    shift = beta - mean * scale
    trailing = (1,) * (rank - 2)
    stem = node.output[0]
    for suffix, value in (("scale", scale), ("shift", shift)):
        graph.initializer.append(
            numpy_helper.from_array(value.reshape(-1, *trailing).astype(np.float32), f"{stem}/batch_first_{suffix}")
        )
    at = list(graph.node).index(node)
    graph.node.remove(node)
    graph.node.insert(at, onnx.helper.make_node("Mul", [node.input[0], f"{stem}/batch_first_scale"],
                                                [f"{stem}/scaled"], name=f"{node.name}/scale"))
    graph.node.insert(at + 1, onnx.helper.make_node("Add", [f"{stem}/scaled", f"{stem}/batch_first_shift"],
                                                    [stem], name=f"{node.name}/shift"))  # fmt: skip


def _set(node: onnx.NodeProto, name: str, value: object) -> None:
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend([*kept, onnx.helper.make_attribute(name, value)])

