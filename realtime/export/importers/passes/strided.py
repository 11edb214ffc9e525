"""torch's `as_strided`, as its dynamo exporter writes it, read back as what it is.

The exporter flattens the whole tensor (Reshape to [-1]) and gathers flat element indices, with the
batch of 1 baked into the indices' first axis (ConvNeXt's pooled features: `as_strided(mean, [1, 768,
1, 1], ...)`). A Gather over the flattened batch has no per-image meaning; the same values come from
a Reshape that keeps the batch (the indices are 0, 1, 2, ...), or else from a Gather along one axis of
[N, per image], which has a backward rule and frees the batch.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from realtime.export.graph.index import attrs, drop_unused_initializers, producers
from realtime.export.graph.passes import drop_dead
from realtime.export.graph.shapes import static_shapes


def flat_gathers_per_image(model: onnx.ModelProto) -> int:
    """Rewrite Reshape(x, [-1]) -> Gather(flat indices [1, ...], axis 0); returns how many were rewritten."""
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    producer = producers(graph.node)
    shapes: dict[str, tuple[int, ...]] | None = None
    rewritten = 0
    for node in list(graph.node):
        if node.op_type != "Gather" or int(attrs(node).get("axis", 0)) != 0 or node.input[1] not in inits:
            continue
        flat = producer.get(node.input[0])
        if flat is None or flat.op_type != "Reshape" or flat.input[1] not in inits:
            continue
        if numpy_helper.to_array(inits[flat.input[1]]).tolist() != [-1]:
            continue
        indices = numpy_helper.to_array(inits[node.input[1]])
        if indices.ndim < 2 or indices.shape[0] != 1 or (indices < 0).any():
            continue  # not a batch of 1 baked in
        if shapes is None:
            shapes = static_shapes(model)
        per_image = shapes.get(flat.input[0])
        if per_image is None or indices.max() >= int(np.prod(per_image)):
            continue
        _replace(graph, node, flat.input[0], indices, identity=indices.size == int(np.prod(per_image))
                 and np.array_equal(indices.ravel(), np.arange(indices.size)))  # fmt: skip
        rewritten += 1
    if rewritten:
        drop_dead(model)  # the flattening Reshapes
        drop_unused_initializers(model)
    return rewritten


def _replace(graph: onnx.GraphProto, gather: onnx.NodeProto, source: str, indices: np.ndarray, identity: bool) -> None:
    """The Gather becomes Reshape(source, [0, *rest]) for identity indices, else Reshape(source, [0, -1]) ->
    Gather(indices[0], axis 1)."""
    stem = gather.output[0]
    rest = list(indices.shape[1:])
    at = list(graph.node).index(gather)
    if identity:
        target = numpy_helper.from_array(np.array([0, *rest], np.int64), f"{stem}/per_image_shape")
        graph.initializer.append(target)
        new = [onnx.helper.make_node("Reshape", [source, target.name], [stem], name=f"{gather.name}/per_image")]
    else:
        target = numpy_helper.from_array(np.array([0, -1], np.int64), f"{stem}/per_image_flat")
        picks = numpy_helper.from_array(indices[0].astype(np.int64), f"{stem}/per_image_indices")
        graph.initializer.extend([target, picks])
        new = [
            onnx.helper.make_node("Reshape", [source, target.name], [f"{stem}/flat"], name=f"{gather.name}/flat"),
            onnx.helper.make_node("Gather", [f"{stem}/flat", picks.name], [stem], name=gather.name, axis=1),
        ]
    graph.node.remove(gather)
    for offset, node in enumerate(new):
        graph.node.insert(at + offset, node)
