"""Attention's q, k, v picked after a Transpose that moves the batch: picked before it instead.

timm and torchvision write `qkv.reshape(N, T, 3, heads, d).permute(2, 0, 3, 1, 4)` and then take
q, k and v along the new first axis (`unbind(0)`: Split or Slice, then Squeeze; or Gather). In
between, the batch is not the first axis, which the backward (and shape reading) assume of every
tensor. Gathering piece i along the axis it came from, then transposing the rest, gives the same
tensors with the batch first throughout.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from realtime.export.graph.index import GraphIndex, InitializerValues, attrs, perm
from realtime.export.graph.passes import drop_dead


def picks_before_transposes(model: onnx.ModelProto) -> int:
    """Rewrite every batch-moving Transpose whose readers only pick single entries of its first axis."""
    graph = model.graph
    index = GraphIndex.of(graph)
    inits = InitializerValues(graph)
    rewritten = 0
    for node in [n for n in graph.node if n.op_type == "Transpose"]:
        order = perm(node)
        if not order or order[0] == 0:
            continue
        picks = [_pick(reader, index, inits) for reader in index.consumers.get(node.output[0], ())]
        if not picks or any(p is None for p in picks) or node.output[0] in {o.name for o in graph.output}:
            continue
        rest = [a - (a > order[0]) for a in order[1:]]
        for i, output in (p for group in picks if group for p in group):
            stem = f"{output}/picked_first"
            at = numpy_helper.from_array(np.array(i, np.int64), f"{stem}/index")
            graph.initializer.append(at)
            _replace_producer(graph, output, [
                onnx.helper.make_node("Gather", [node.input[0], at.name], [stem], name=stem, axis=order[0]),
                onnx.helper.make_node("Transpose", [stem], [output], name=f"{stem}/rest", perm=rest),
            ])  # fmt: skip
        rewritten += 1
    if rewritten:
        drop_dead(model)
    return rewritten


def _pick(reader: onnx.NodeProto, index: GraphIndex, inits: Mapping[str, np.ndarray]) -> list[tuple[int, str]] | None:
    """(entry, the tensor that holds it with axis 0 gone) for each entry `reader` takes; None otherwise."""
    if reader.op_type == "Gather" and int(attrs(reader).get("axis", 0)) == 0:
        at = inits.get(reader.input[1])
        return [(int(at), reader.output[0])] if at is not None and at.ndim == 0 else None
    if reader.op_type == "Slice":
        bounds = [inits.get(name) for name in reader.input[1:4]] if len(reader.input) >= 4 else None
        steps = inits.get(reader.input[4]) if len(reader.input) > 4 and reader.input[4] else np.ones(1)
        if bounds is None or any(b is None or b.size != 1 for b in bounds) or steps is None or int(steps[0]) != 1:
            return None
        start, end, axis = (int(b.reshape(-1)[0]) for b in bounds)  # type: ignore[union-attr]
        squeezed = _squeezed(reader.output[0], index, inits)
        return [(start, squeezed)] if axis == 0 and end == start + 1 and start >= 0 and squeezed else None
    if reader.op_type == "Split" and int(attrs(reader).get("axis", 0)) == 0:
        found = [(i, _squeezed(output, index, inits)) for i, output in enumerate(reader.output)]
        return [(i, name) for i, name in found if name] if all(name for _, name in found) else None
    return None


def _squeezed(name: str, index: GraphIndex, inits: Mapping[str, np.ndarray]) -> str | None:
    """The output of the only reader of `name`, when that is a Squeeze of axis 0."""
    readers = index.consumers.get(name, ())
    if len(readers) != 1 or readers[0].op_type != "Squeeze":
        return None
    squeeze = readers[0]
    axes = attrs(squeeze).get("axes")
    if axes is None and len(squeeze.input) > 1:
        axes = inits.get(squeeze.input[1])
    return squeeze.output[0] if axes is not None and [int(a) for a in np.asarray(axes).reshape(-1)] == [0] else None


def _replace_producer(graph: onnx.GraphProto, output: str, nodes: list[onnx.NodeProto]) -> None:
    """Put `nodes` where the node making `output` is, and drop that node's claim on `output`."""
    producer = next(n for n in graph.node if output in n.output)
    at = list(graph.node).index(producer)
    producer.output[:] = [f"{o}/unused" if o == output else o for o in producer.output]
    for offset, node in enumerate(nodes):
        graph.node.insert(at + 1 + offset, node)
