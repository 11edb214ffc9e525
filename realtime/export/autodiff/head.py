"""The classifier head of an ONNX graph: the nodes between a target tensor and the logits.

Pure graph analysis, no arithmetic: the differentiable nodes after the target in
topological order, its layout, and the static shapes the derivative rules need.
Refusals name the node and what would work.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import onnx

from realtime.export.graph.index import GraphIndex
from realtime.export.graph.layout import NCHW, NHWC
from realtime.export.graph.shapes import static_shapes
from realtime.export.ops import record
from realtime.export.targets import HeadError, alias, layout_of, resolve_logits


@dataclass(frozen=True)
class Head:
    """What the backward builder needs: the target, its layout, the head nodes and their shapes."""

    target: str
    layout: str
    logits: str
    nodes: tuple[onnx.NodeProto, ...]
    shapes: Mapping[str, tuple[int, ...]]  # static dims after the batch axis
    num_classes: int

    @property
    def map_shape(self) -> tuple[int, int, int]:
        """(h, w, channels) of the target."""
        d = self.shapes[self.target]
        return (d[1], d[2], d[0]) if self.layout == NCHW else (d[0], d[1], d[2])

    def spatial_axes(self) -> tuple[int, int]:
        return (2, 3) if self.layout == NCHW else (1, 2)


def extract(
    model: onnx.ModelProto,
    target: str,
    input_layout: str,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    target_layout: str | None = None,
) -> Head:
    """The head after `target`; refuses heads with ops that have no derivative rule (ops/).

    A node may also read tensors from elsewhere in the body (a residual around the target, the
    class token's path): they do not depend on the target, so they are constants to its gradient,
    as they are to autograd's.

    `target_layout` is the target's layout when the caller knows it (a Keras layer is NHWC);
    otherwise the ops that made it tell.
    """
    index = GraphIndex.of(model.graph)
    shapes = static_shapes(model) if shapes is None else shapes
    logits = resolve_logits(model, index)
    needed = index.ancestors(logits)
    target, order = alias(index, target, needed)
    dims = shapes.get(target)
    if dims is None or len(dims) != 3:
        raise HeadError(f"tensor {target!r} has shape {dims}; Grad-CAM needs a static 4-D [N,C,H,W] or [N,H,W,C] map")
    layout = _aliased_layout(target_layout, order) if target_layout else layout_of(model, index, target, input_layout)
    if layout is None:
        raise HeadError(f"cannot tell whether {target!r} is NCHW or NHWC; its producers do not say")
    logit_dims = shapes.get(logits)
    if logit_dims is None or len(logit_dims) != 1:
        raise HeadError(f"the model's output {logits!r} has shape {logit_dims}; a classifier ends in [N, classes]")

    carried = {target}
    nodes: list[onnx.NodeProto] = []
    for node in model.graph.node:
        op = record(node.op_type)
        if not op.differentiable or not any(o in needed for o in node.output):
            continue
        positions = op.positions(len(node.input))
        if not any(node.input[p] in carried for p in positions if p < len(node.input)):
            if any(i in carried for i in node.input):
                raise HeadError(
                    f"node {node.name!r} ({node.op_type}) reads the map as a parameter; only its data input "
                    "can carry the gradient here"
                )
            continue
        if op.rule is None:
            raise HeadError(f"node {node.name!r} ({node.op_type}) after {target!r} is not supported in the head")
        carried.update(o for o in node.output[:1] if o)
        nodes.append(node)
    if logits not in carried:
        raise HeadError(f"no differentiable path from {target!r} to the logits {logits!r}")
    return Head(target, layout, logits, tuple(nodes), shapes, logit_dims[0])


def _aliased_layout(layout: str, perm: list[int] | None) -> str | None:
    """The layout of a Transpose's input, given its output's layout."""
    if perm is None or perm == [0, 1, 2, 3]:
        return layout
    if layout == NHWC and perm == [0, 2, 3, 1]:
        return NCHW
    if layout == NCHW and perm == [0, 3, 1, 2]:
        return NHWC
    return None
