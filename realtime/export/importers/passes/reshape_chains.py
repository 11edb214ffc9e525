"""Reshape and Transpose chains that fold the batch into another axis, written as the one op they are.

torch's dynamo exporter writes attention's K^T as Reshape([N, heads, T, d] -> [N*heads, T, d]),
Transpose, Reshape back to [N, heads, d, T]: one Transpose of the last two axes. In between, the
batch is merged with the heads, which the backward (and shape reading) cannot follow, since they
assume the batch is every tensor's first axis. Replaying the chain on numbered elements at batch
2 tells which single Transpose or Reshape, batch first, gives the same tensor.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import permutations

import numpy as np
import onnx
from onnx import numpy_helper

from realtime.export.graph.index import GraphIndex, InitializerValues, drop_unused_initializers, perm
from realtime.export.graph.passes import drop_dead
from realtime.export.graph.shapes import static_shapes

MAX_ELEMENTS = 1 << 22  # per image: the replay numbers every element


def collapse_batch_folding_chains(model: onnx.ModelProto) -> int:
    """Replace each chain of Reshape (constant targets) and Transpose nodes whose inner tensors do not keep
    the batch first by one Transpose or Reshape; returns how many chains were replaced."""
    graph = model.graph
    index = GraphIndex.of(graph)
    inits = InitializerValues(graph)
    shapes = static_shapes(model)
    outputs = {o.name for o in graph.output}
    collapsed = 0
    for node in list(graph.node):
        before = index.producer.get(node.input[0])
        continues = before is not None and _movable(before, inits) and len(index.consumers[node.input[0]]) == 1
        if not _movable(node, inits) or continues:
            continue  # not a chain's first node
        dims = shapes.get(node.input[0])
        if dims is None or int(np.prod(dims)) > MAX_ELEMENTS:
            continue
        chain = [node]
        while True:
            readers = index.consumers.get(chain[-1].output[0], ())
            if len(readers) != 1 or not _movable(readers[0], inits) or chain[-1].output[0] in outputs:
                break
            chain.append(readers[0])
        values = [np.arange(2 * int(np.prod(dims))).reshape(2, *dims)]  # values[i]: before link i
        try:
            for link in chain:
                values.append(_replay(link, values[-1], inits))
        except ValueError:  # a target with the batch of 1 baked in (Swin's windows): not at batch 2
            continue
        for first, last in _folding_segments([v.shape[0] == 2 for v in values]):
            source = node.input[0] if first == 0 else chain[first - 1].output[0]
            replacement = _one_op(values[first], values[last + 1], source, chain[last].output[0], graph)
            if replacement is None:
                continue
            chain[last].output[0] = f"{chain[last].output[0]}/before_collapse"
            graph.node.insert(list(graph.node).index(chain[last]) + 1, replacement)
            collapsed += 1
    if collapsed:
        drop_dead(model)
        drop_unused_initializers(model)
    return collapsed


def _folding_segments(batch_first: list[bool]) -> list[tuple[int, int]]:
    """(first link, last link) of each stretch of a chain whose inner tensors do not keep the batch first,
    between two tensors that do: Hugging Face's attention writes K^T's fold after q/k/v's own reshapes, so a
    whole chain is several ops, but each fold is one."""
    segments, start = [], None
    for i in range(1, len(batch_first)):
        if not batch_first[i] and start is None and batch_first[i - 1]:
            start = i - 1  # link i - 1 leaves the batch behind
        elif batch_first[i] and start is not None:
            segments.append((start, i - 1))
            start = None
    return segments


def _movable(node: onnx.NodeProto, inits: Mapping[str, np.ndarray]) -> bool:
    return node.op_type == "Transpose" or (node.op_type == "Reshape" and node.input[1] in inits)


def _replay(node: onnx.NodeProto, values: np.ndarray, inits: Mapping[str, np.ndarray]) -> np.ndarray:
    if node.op_type == "Transpose":
        order = perm(node)
        return values.transpose(order) if order else values.transpose()
    target = [int(v) for v in inits[node.input[1]]]
    target = [values.shape[i] if v == 0 else v for i, v in enumerate(target)]  # allowzero=1 with a 0: never here
    return values.reshape(target)


def _one_op(
    start: np.ndarray, end: np.ndarray, source: str, name: str, graph: onnx.GraphProto
) -> onnx.NodeProto | None:
    """A Transpose (batch axis fixed) or a Reshape ([-1, ...]) that maps `start` to `end`, writing `name`."""
    for order in permutations(range(1, start.ndim)):
        candidate = start.transpose(0, *order)
        if candidate.shape == end.shape and np.array_equal(candidate, end):
            return onnx.helper.make_node("Transpose", [source], [name], name=f"{name}/collapsed", perm=[0, *order])
    if np.array_equal(start.reshape(end.shape), end):
        target = numpy_helper.from_array(np.array([-1, *end.shape[1:]], np.int64), f"{name}/collapsed_shape")
        graph.initializer.append(target)
        return onnx.helper.make_node("Reshape", [source, target.name], [name], name=f"{name}/collapsed")
    return None
