"""A ViT's class token, taken before the per-token tail instead of after it.

After the last block's attention, a ViT's tail (norm2, the MLP, the residual Add, the final norm) works
on every token, and then the head keeps only the class token (`x[:, 0]`, a Gather). Each of those ops
works per token, so selecting the token first gives the same logits for 1/197th of the tail's cost, in
the forward and in the backward (whose gradient at the tail is otherwise zero but for one token).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from realtime.export.graph.index import GraphIndex, attrs, drop_unused_initializers
from realtime.export.graph.passes import drop_dead, topological_sort
from realtime.export.graph.shapes import static_shapes
from realtime.export.ops import record
from realtime.export.tokens import tokens_mixed_later

PER_TOKEN = ("elementwise", "last_axis_norm", "right_product")  # how an op can take the selected token


def select_before_the_tail(model: onnx.ModelProto) -> int:
    """Move every Gather of one constant token (axis 1 of [N, T, C]) up through the per-token ops that make
    its input; returns how many Gathers moved."""
    graph = model.graph
    inits = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
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
        source = chain.moved(node.input[0])
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
    """The selected token of each tensor on the way up ([N, 1, C]), as new nodes appended to the graph."""

    def __init__(
        self, graph: onnx.GraphProto, index: GraphIndex, shapes: dict, inits: dict, token: int, stem: str
    ) -> None:
        self.graph, self.index, self.shapes, self.inits, self.stem = graph, index, shapes, inits, stem
        self.token, self.added, self.memo = token, 0, {}  # type: ignore[var-annotated]
        self.stops: set[str] = set()

    def selected(self, name: str) -> str:
        """[N, 1, C]: the token, taken as early as the ops that make `name` allow."""
        if name not in self.memo:
            self.memo[name] = self.moved(name) or self._gather(name)
        return self.memo[name]

    def _gather(self, name: str) -> str:
        picks = numpy_helper.from_array(np.array([self.token], np.int64), f"{self.stem}/{self.added}/token")
        self.graph.initializer.append(picks)
        out = f"{self.stem}/{self.added}"
        self.graph.node.append(onnx.helper.make_node("Gather", [name, picks.name], [out], name=out, axis=1))
        self.added += 1
        return out

    def moved(self, name: str) -> str | None:
        """The producer of `name` applied to its inputs' selected tokens, when it works per token and
        nothing that mixes tokens reads `name` later (then the whole tensor is needed, and the token is
        taken there)."""
        node = self.index.producer.get(name)
        if node is None or name in self.stops or len(node.output) != 1:
            return None  # the residual stream before the last attention: still needed whole
        how = record(node.op_type).per_token
        if how not in PER_TOKEN or (how == "last_axis_norm" and int(attrs(node).get("axis", -1)) not in (-1, 2)):
            return None
        if how == "right_product" and (node.input[1] not in self.inits or self.inits[node.input[1]].ndim != 2):
            return None  # attention's products of two activations mix the tokens
        inputs = []
        for position, source in enumerate(node.input):
            if not source or (how != "elementwise" and position > 0):
                inputs.append(source)  # a norm's scale and bias, a product's weight: over the channels
                continue
            if source in self.inits:
                value = self.inits[source]
                if value.ndim == 3 and value.shape[1] != 1:
                    return None  # varies along the tokens (a position embedding): not this pass's case
                inputs.append(source)
            elif len(self.shapes.get(source, ())) == 2:
                inputs.append(self.selected(source))
            else:
                return None
        out = f"{self.stem}/{self.added}"
        copy = onnx.helper.make_node(node.op_type, inputs, [out], name=out)
        copy.attribute.extend(node.attribute)
        self.graph.node.append(copy)
        self.added += 1
        return out
