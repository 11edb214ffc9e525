"""A batch of 1 baked into a graph, freed where that is checked to be safe.

torch's dynamo exporter writes the batch of its example input into Reshape targets ([1, 197, 3, 3,
64]) and into constants it folded (DeiT's class token, expanded to [1, 1, 192] and concatenated with
the patch tokens). Each pass here makes one of these follow the input's batch; the probe (`probe.py`)
then checks that batch 2 gives each image its own logits, and `restore` undoes the Reshape targets
when it does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from realtime.export.graph.index import GraphIndex, drop_unused_initializers
from realtime.export.ops import record


@dataclass(frozen=True)
class Rewritten:
    """A Reshape whose target was changed, and what it read before (to put back)."""

    node: onnx.NodeProto
    target: str
    allowzero: int | None
    original: onnx.TensorProto  # the target's initializer: passes in between may drop it as unused


def batch_one_reshapes_to_dynamic(model: onnx.ModelProto) -> list[Rewritten]:
    """Reshape targets that start with a constant 1 (a batch baked in) start with -1 instead ("whatever
    is left", which is the batch when the other dims are per image), or with 0 ("the input's first
    dimension") where another dim is already -1; for Reshapes of computed tensors (a constant's
    reshape has no batch). Whether that was right is checked afterwards (the probe); `restore`
    undoes it."""
    index = GraphIndex.of(model.graph)
    inits = {init.name: init for init in model.graph.initializer}
    copies: dict[str, str] = {}
    changed = []
    per_image = from_the_images(model, index)
    for node in model.graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        if node.input[0] not in per_image:  # a constant, or arithmetic on shapes (a detector's anchor grid)
            continue
        target = numpy_helper.to_array(inits[node.input[1]])
        if target.ndim != 1 or len(target) < 2 or target[0] != 1 or (target[1:] == 0).any():
            continue
        if node.input[1] not in copies:  # one freed copy per target, however many Reshapes read it
            fixed = target.copy()
            fixed[0] = 0 if (target[1:] == -1).any() else -1  # attention's [1, heads, d, T] after [N*heads, ...]
            copies[node.input[1]] = f"{node.input[1]}/dynamic_batch"
            model.graph.initializer.append(numpy_helper.from_array(fixed, copies[node.input[1]]))
        allowzero = next((a.i for a in node.attribute if a.name == "allowzero"), None)
        changed.append(Rewritten(node, node.input[1], allowzero, inits[node.input[1]]))
        node.input[1] = copies[node.input[1]]
        for attribute in node.attribute:  # torch's dynamo exporter says allowzero=1; with no 0 it means nothing
            if attribute.name == "allowzero":
                attribute.i = 0
    return changed


def from_the_images(model: onnx.ModelProto, index: GraphIndex) -> set[str]:
    """Tensors computed from the graph's inputs' values (Shape's output reads no values): only these carry a
    batch. Rewriting the target of a Reshape of anything else ([1, 2, -1] of an anchor grid) scrambles it."""
    found = {v.name for v in model.graph.input if v.name not in index.constants}
    for node in model.graph.node:
        if not record(node.op_type).reads_shape_only and any(i in found for i in node.input if i):
            found.update(o for o in node.output if o)
    return found


def restore(model: onnx.ModelProto, rewritten: Sequence[Rewritten]) -> None:
    """Put the Reshape targets back as they were (the batch could not be freed)."""
    present = {init.name for init in model.graph.initializer}
    for change in rewritten:
        change.node.input[1] = change.target
        if change.target not in present:
            model.graph.initializer.append(change.original)
            present.add(change.target)
        for attribute in change.node.attribute:
            if attribute.name == "allowzero" and change.allowzero is not None:
                attribute.i = change.allowzero
    drop_unused_initializers(model)


def batch_one_constants_follow_the_batch(model: onnx.ModelProto) -> int:
    """A constant [1, ...] concatenated (on a non-batch axis) with computed tensors is expanded to their
    batch first: Expand(constant, [Shape(computed)[0], ...]). Returns how many were rewritten."""
    graph = model.graph
    index = GraphIndex.of(graph)
    inits = {init.name: init for init in graph.initializer}
    rewritten = 0
    for node in list(graph.node):
        if node.op_type != "Concat" or next((a.i for a in node.attribute if a.name == "axis"), 0) == 0:
            continue
        computed = [i for i in node.input if i not in index.constants]
        if not computed:
            continue
        for position, name in enumerate(node.input):
            if name not in inits or not inits[name].dims or inits[name].dims[0] != 1:
                continue
            stem = f"{name}/follows_batch_{rewritten}"
            rest = numpy_helper.from_array(np.array(list(inits[name].dims[1:]), np.int64), f"{stem}/rest")
            bounds = [
                numpy_helper.from_array(np.array([v], np.int64), f"{stem}/{w}") for w, v in (("zero", 0), ("one", 1))
            ]
            graph.initializer.extend([rest, *bounds])
            at = list(graph.node).index(node)
            new = [
                onnx.helper.make_node("Shape", [computed[0]], [f"{stem}/shape"], name=f"{stem}/shape"),
                onnx.helper.make_node("Slice", [f"{stem}/shape", bounds[0].name, bounds[1].name], [f"{stem}/batch"],
                                      name=f"{stem}/batch"),
                onnx.helper.make_node("Concat", [f"{stem}/batch", rest.name], [f"{stem}/target"], name=f"{stem}/target",
                                      axis=0),
                onnx.helper.make_node("Expand", [name, f"{stem}/target"], [stem], name=stem),
            ]  # fmt: skip
            for offset, added in enumerate(new):
                graph.node.insert(at + offset, added)
            node.input[position] = stem
            rewritten += 1
    return rewritten
