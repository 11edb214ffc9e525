"""Split, one node with several outputs, written as one Slice per output.

A transformer's classic export splits q, k and v (and timm's `unbind`) with Split; the backward
walks nodes with one output each, and a Slice per piece has a rule (the gradient padded back).
onnxruntime runs the Slices as fast as the Split they replace.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from realtime.export.graph.index import InitializerValues, attrs, drop_unused_initializers
from realtime.export.graph.shapes import static_shapes


def splits_to_slices(model: onnx.ModelProto) -> int:
    """Rewrite every Split along a non-batch axis whose piece sizes are known; returns how many."""
    graph = model.graph
    inits = InitializerValues(graph)
    shapes: dict[str, tuple[int, ...]] | None = None
    rewritten = 0
    for node in [n for n in graph.node if n.op_type == "Split" and n.domain in ("", "ai.onnx")]:
        if shapes is None:
            shapes = static_shapes(model)
        dims = shapes.get(node.input[0])
        if dims is None:
            continue
        axis = int(attrs(node).get("axis", 0)) % (len(dims) + 1)
        if axis == 0:
            continue
        sizes = _sizes(node, inits, dims[axis - 1])
        if sizes is None:
            continue
        at = list(graph.node).index(node)
        graph.node.remove(node)
        start = 0
        for i, (size, output) in enumerate(zip(sizes, node.output, strict=True)):
            name = f"{node.name or node.output[0]}/slice{i}"
            bounds = [numpy_helper.from_array(np.array([v], np.int64), f"{name}/{what}")
                      for what, v in (("start", start), ("end", start + size), ("axis", axis))]  # fmt: skip
            graph.initializer.extend(bounds)
            start += size
            if output:
                slice_node = onnx.helper.make_node(
                    "Slice", [node.input[0], *(b.name for b in bounds)], [output], name=name
                )
                graph.node.insert(at, slice_node)
                at += 1
        rewritten += 1
    if rewritten:
        drop_unused_initializers(model)
    return rewritten


def _sizes(node: onnx.NodeProto, inits: Mapping[str, np.ndarray], extent: int) -> list[int] | None:
    """The piece sizes: the `split` input (opset 13 on) or attribute, else equal pieces (`num_outputs`)."""
    if len(node.input) > 1 and node.input[1]:
        given = inits.get(node.input[1])
        return None if given is None else [int(v) for v in given]
    listed = attrs(node).get("split")
    if listed is not None:
        return [int(v) for v in listed]
    pieces = len(node.output)
    step = -(-extent // pieces)  # opset 18: the last piece is smaller when the extent does not divide
    return [min(step, extent - i * step) for i in range(pieces)]
