"""A ViT's class token, taken as early as the ops that make it allow: before the tail, inside the attention.

After the last block, a ViT's head keeps only the class token (`x[:, 0]`, a Gather). Everything
between the last attention and that Gather works per token (norm2, the MLP, the residual Add, the
final norm), and the attention's output row 0 needs only the query of token 0: softmax(q0 K^T) V. So
the token is selected before each of those ops instead of after them, and the same logits cost the
tail 1/197th of its work, in the forward and in the backward; the attention's backward then takes
products with one row instead of 197 x 197 matrices. The selection stops where a tensor is read
whole by something else (the keys and values, the residual stream of earlier blocks).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from realtime.export.graph.index import GraphIndex, InitializerValues, attrs, drop_unused_initializers, perm
from realtime.export.graph.passes import drop_dead, topological_sort
from realtime.export.graph.shapes import static_shapes
from realtime.export.ops import record
from realtime.export.targets.tokens import tokens_mixed_later


def select_before_the_tail(model: onnx.ModelProto) -> int:
    """Move every Gather of one constant token (axis 1 of [N, T, C]) up through the ops that make its input;
    returns how many Gathers moved."""
    graph = model.graph
    inits = InitializerValues(graph)
    moved = 0
    for node in [n for n in graph.node if n.op_type == "Gather"]:
        at = inits.get(node.input[1])
        if at is None or at.ndim != 0 or int(attrs(node).get("axis", 0)) != 1:
            continue
        index, shapes = GraphIndex.of(graph), static_shapes(model)
        if len(shapes.get(node.input[0], ())) != 2:
            continue
        chain = _Chain(graph, index, shapes, inits, int(at), f"{node.output[0]}/early")
        chain.stops = tokens_mixed_later(model, index)
        source = chain.moved(node.input[0], 1)
        if source is None:
            continue  # its input is not made per token: the Gather stays where it is
        graph.node.remove(node)
        axes = numpy_helper.from_array(np.array([1], np.int64), f"{chain.stem}/axes")
        graph.initializer.append(axes)
        graph.node.append(onnx.helper.make_node("Squeeze", [source, axes.name], [node.output[0]], name=chain.stem))
        moved += 1
    topological_sort(model)
    drop_dead(model)  # the tails' full-token copies, and pieces of a chain that stopped
    drop_unused_initializers(model)
    return moved


class _Chain:
    """The selected token of each tensor on the way up (that axis kept, of size 1), as new graph nodes."""

    def __init__(
        self,
        graph: onnx.GraphProto,
        index: GraphIndex,
        shapes: dict,
        inits: Mapping[str, np.ndarray],
        token: int,
        stem: str,
    ) -> None:
        self.graph, self.index, self.shapes, self.inits, self.stem = graph, index, shapes, inits, stem
        self.token, self.added, self.memo = token, 0, {}  # type: ignore[var-annotated]
        self.stops: set[str] = set()

    def selected(self, name: str, axis: int) -> str:
        """`name` with only the token along `axis`, taken as early as the ops that make `name` allow."""
        if (name, axis) not in self.memo:
            self.memo[(name, axis)] = self.moved(name, axis) or self._gather(name, axis)
        return self.memo[(name, axis)]

    def _gather(self, name: str, axis: int) -> str:
        picks = self._const(np.array([self.token], np.int64))
        return self._node("Gather", [name, picks], axis=axis)

    def _const(self, value: np.ndarray) -> str:
        tensor = numpy_helper.from_array(value, f"{self.stem}/{self.added}/const")
        self.graph.initializer.append(tensor)
        self.added += 1
        return tensor.name

    def _node(self, op_type: str, inputs: list[str], like: onnx.NodeProto | None = None, **attributes: Any) -> str:
        out = f"{self.stem}/{self.added}"
        node = onnx.helper.make_node(op_type, inputs, [out], name=out, **attributes)
        if like is not None:
            node.attribute.extend(like.attribute)
        self.graph.node.append(node)
        self.added += 1
        return out

    def _rank(self, name: str) -> int | None:
        if name in self.inits:
            return int(self.inits[name].ndim)
        dims = self.shapes.get(name)
        return None if dims is None else len(dims) + 1

    def moved(self, name: str, axis: int) -> str | None:
        """The producer of `name` applied to its inputs' selections, when its role allows; None where the
        token is better taken from `name` itself (read whole elsewhere, or an op that mixes along `axis`)."""
        node = self.index.producer.get(name)
        if node is None or len(node.output) != 1 or self._rank(name) is None:
            return None
        if name in self.stops and len(self.index.consumers.get(name, ())) > 1:
            return None  # attention's q, k and v, the residual stream: needed whole, the token taken here
        how = record(node.op_type).per_token
        rank = self._rank(name)
        assert rank is not None
        if how == "elementwise":
            return self._elementwise(node, axis, rank)
        if how == "last_axis_norm" and int(attrs(node).get("axis", -1)) % rank == rank - 1 and axis != rank - 1:
            return self._node(node.op_type, [self.selected(node.input[0], axis), *node.input[1:]], like=node)
        if how == "right_product" and axis == rank - 2 and self._rank(node.input[0]) == rank:
            second = node.input[1]  # a weight, or attention's K^T / V: rows of the first factor are independent
            if second in self.inits and self.inits[second].ndim != 2:
                return None
            return self._node("MatMul", [self.selected(node.input[0], axis), second])
        if how == "normalises_one_axis" and int(attrs(node).get("axis", -1)) % rank != axis:
            return self._node(node.op_type, [self.selected(node.input[0], axis)], like=node)
        if how == "permutes":
            order = perm(node) or list(reversed(range(rank)))
            return self._node("Transpose", [self.selected(node.input[0], order[axis])], like=node)
        if how == "picks":
            return self._picked(node, axis)
        if how == "reshapes":
            return self._reshaped(node, axis)
        return None

    def _elementwise(self, node: onnx.NodeProto, axis: int, rank: int) -> str | None:
        inputs = []
        for source in node.input:
            other = self._rank(source)
            if other is None:
                return None
            aligned = axis - (rank - other)  # numpy broadcasting aligns the last axes
            if aligned == 0:
                return None  # along the batch: not a token axis
            extent = None
            if aligned > 0:
                extent = self.inits[source].shape[aligned] if source in self.inits else self.shapes[source][aligned - 1]
            if aligned < 0 or extent == 1:
                inputs.append(source)  # broadcast along the axis: the same for every token
            elif source in self.inits:
                return None  # a constant that varies along the tokens (a position embedding)
            else:
                inputs.append(self.selected(source, aligned))
        return self._node(node.op_type, inputs, like=node)

    def _picked(self, node: onnx.NodeProto, axis: int) -> str | None:
        """Gather of one constant entry along another axis (q out of qkv): select first, then pick."""
        at = self.inits.get(node.input[1])
        along = int(attrs(node).get("axis", 0))
        rank = self._rank(node.input[0])
        if at is None or at.ndim != 0 or rank is None:
            return None
        along %= rank
        source_axis = axis if axis < along else axis + 1
        if along == source_axis or along == 0:
            return None
        return self._node("Gather", [self.selected(node.input[0], source_axis), node.input[1]], axis=along)

    def _reshaped(self, node: onnx.NodeProto, axis: int) -> str | None:
        """A Reshape that keeps every axis up to `axis` (merges or splits only later ones) commutes with it."""
        before, after = self.shapes.get(node.input[0]), self.shapes.get(node.output[0])
        if before is None or after is None or axis < 1 or tuple(before[:axis]) != tuple(after[:axis]):
            return None
        target = [-1, *after]  # the static shape, the batch inferred (a computed target needs no reading)
        target[axis] = 1
        return self._node("Reshape", [self.selected(node.input[0], axis), self._const(np.array(target, np.int64))])
