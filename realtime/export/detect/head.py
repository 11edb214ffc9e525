"""Where a YOLO-style detect head lives in a graph: its levels, each level's class branch, boxes and scores.

Pure graph analysis. The head is the one Ultralytics writes for YOLOv8, YOLO11 and YOLO26 (and any
exporter that writes the same layout): one output [N, 4 + C, A] = Concat(boxes [N,4,A], Sigmoid(logits
[N,C,A])) along axis 1, the logits the per-level class convolutions reshaped to [N, C, h*w] and
concatenated along the anchors (possibly through a Concat with the box channels and a Slice or Split).
Each level's class branch runs from the head's input for that stride (which the box branch reads too) to
its class convolution, through convolutions and element-wise ops only, so one logit reaches back only a
small window of the head input: `radius` cells around its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx

from realtime.export.graph.index import GraphIndex, InitializerValues, attrs
from realtime.export.ops import elementwise, record

ELEMENTWISE = frozenset(op.op_type for op in elementwise.RECORDS)  # the family's own list: a window copy of each
# is the op on a window


class DetectorError(ValueError):
    """A file that looks like a detector but whose head this exporter does not know; says what it expected."""


EXPECTED = (
    "expected the YOLOv8 / YOLO11 / YOLO26 Detect head as `yolo export format=onnx` writes it: one output "
    "[N, 4 + classes, anchors] = Concat(boxes, Sigmoid(class logits)), the logits per-level convolutions "
    "concatenated along the anchors"
)


@dataclass(frozen=True)
class Level:
    """One stride of the head: its input map, its class branch, and where its anchors sit in the output."""

    input: str  # the head input for this stride [N, c, h, w]: the level Grad-CAM explains
    logits: str  # the class convolution's output [N, C', h, w]; channels [channel, channel + classes) are classes
    channel: int
    branch: tuple[onnx.NodeProto, ...]  # the class branch, input -> logits, in graph order
    height: int
    width: int
    channels: int
    offset: int  # its first anchor in the output's anchor axis
    stride: int  # input pixels per cell
    radius: int  # how many cells around its own one logit reads

    @property
    def window(self) -> int:
        return 2 * self.radius + 1


@dataclass(frozen=True)
class DetectHead:
    output: str  # [N, 4 + C, A]
    boxes: str  # [N, 4, A]: x, y, w, h in input pixels
    logits: str  # [N, C, A]: the class logits (before the Sigmoid)
    num_classes: int
    anchors: int
    levels: tuple[Level, ...]  # finest first


def looks_like_a_detector(model: onnx.ModelProto) -> bool:
    """One output of rank 3: what a detector writes, and no classifier does."""
    outputs = list(model.graph.output)
    return len(outputs) == 1 and len(outputs[0].type.tensor_type.shape.dim) == 3


def find_head(model: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]], input_size: tuple[int, int]) -> DetectHead:
    """The detect head of `model` (forward graph, NCHW input of `input_size`), or a DetectorError."""
    index = GraphIndex.of(model.graph)
    output = model.graph.output[0].name
    out_dims = shapes.get(output)
    node = index.producer.get(output)
    if out_dims is None or len(out_dims) != 2 or node is None or node.op_type != "Concat" or len(node.input) != 2:
        raise DetectorError(f"output {output!r} {out_dims}: {EXPECTED}")
    boxes, scores = node.input
    sigmoid = index.producer.get(scores)
    if sigmoid is None or sigmoid.op_type != "Sigmoid" or shapes.get(boxes, (0,))[0] != 4:
        raise DetectorError(f"output {output!r} is not Concat(boxes [N,4,A], Sigmoid(logits)): {EXPECTED}")
    logits = sigmoid.input[0]
    num_classes, anchors = shapes[logits]
    pieces = _trace(index, InitializerValues(model.graph), shapes, logits, 0, num_classes, 0)
    levels = []
    for tensor, channel, offset in sorted(pieces, key=lambda p: p[2]):
        dims = shapes[tensor]
        if len(dims) != 3:
            raise DetectorError(f"the class logits come from {tensor!r} {dims}, not a [N, C, h, w] map: {EXPECTED}")
        height, width = dims[1], dims[2]
        stride = input_size[0] // height
        if stride * height != input_size[0] or stride * width != input_size[1]:
            raise DetectorError(f"level {tensor!r} ({height}x{width}) does not divide the input {input_size}")
        head_input, branch, radius = _branch(index, shapes, tensor)
        levels.append(
            Level(head_input, tensor, channel, branch, height, width, shapes[head_input][0], offset, stride, radius)
        )
    if sum(level.height * level.width for level in levels) != anchors:
        raise DetectorError(f"the levels' cells do not add up to the {anchors} anchors: {EXPECTED}")
    return DetectHead(output, boxes, logits, num_classes, anchors, tuple(levels))


def _trace(
    index: GraphIndex, values: Mapping[str, np.ndarray], shapes: Mapping[str, tuple[int, ...]], tensor: str,
    channel: int, count: int, offset: int,
) -> list[tuple[str, int, int]]:  # fmt: skip
    """Follow `count` class channels from `channel` of `tensor` back to per-level 4-D maps:
    (map, its first class channel, the level's first anchor)."""
    dims = shapes.get(tensor)
    node = index.producer.get(tensor)
    if dims is not None and len(dims) == 3:
        return [(tensor, channel, offset)]
    if node is None or dims is None or len(dims) != 2:
        raise DetectorError(f"cannot follow the class logits back through {tensor!r}: {EXPECTED}")
    a = attrs(node)
    if node.op_type == "Concat" and int(a["axis"]) % 3 == 2:  # levels side by side along the anchors
        found, start = [], offset
        for part in node.input:
            found += _trace(index, values, shapes, part, channel, count, start)
            start += shapes[part][1]
        return found
    if node.op_type == "Concat" and int(a["axis"]) % 3 == 1:  # boxes and classes side by side
        start = 0
        for part in node.input:
            size = shapes[part][0]
            if start <= channel and channel + count <= start + size:
                return _trace(index, values, shapes, part, channel - start, count, offset)
            start += size
    if node.op_type == "Slice":
        starts, axes = _ints(values, node.input[1]), _ints(values, node.input[3]) if len(node.input) > 3 else [0]
        steps = _ints(values, node.input[4]) if len(node.input) > 4 and node.input[4] else [1]
        if starts is not None and axes is not None and [a % 3 for a in axes] == [1] and steps == [1]:
            return _trace(index, values, shapes, node.input[0], channel + starts[0], count, offset)
    if node.op_type == "Reshape" and len(shapes.get(node.input[0], ())) == 3:
        c, h, w = shapes[node.input[0]]
        if dims == (c, h * w):
            return [(node.input[0], channel, offset)]
    raise DetectorError(f"the class logits pass through {node.op_type} {node.name!r}, which is not: {EXPECTED}")


def _ints(values: Mapping[str, np.ndarray], name: str) -> list[int] | None:
    return [int(v) for v in np.asarray(values[name]).ravel()] if name in values else None


def _branch(
    index: GraphIndex, shapes: Mapping[str, tuple[int, ...]], logits: str
) -> tuple[str, tuple[onnx.NodeProto, ...], int]:
    """The head input, the class branch from it to `logits`, and how far (in cells) one logit reaches back.

    Walking back from the logits, the head input is the first map that a node off the way to the logits
    also reads (the box branch does); every node on the way must be a 'same' convolution or element-wise."""
    toward = index.ancestors(logits)  # every tensor the logits are computed from
    inside: dict[str, onnx.NodeProto] = {}
    frontier, head_inputs = [logits], set()
    while frontier:
        tensor = frontier.pop()
        node = index.producer.get(tensor)
        if node is None:
            raise DetectorError(f"the class branch reaches the graph input at {tensor!r}: {EXPECTED}")
        _check_branch_node(node)
        inside[node.output[0]] = node
        for name in node.input:
            if not name or name in index.constants:
                continue
            shared = any(c.output[0] not in toward for c in index.consumers.get(name, ()))
            if shared and len(shapes.get(name, ())) == 3:
                head_inputs.add(name)
            elif name not in inside:
                frontier.append(name)
    if len(head_inputs) != 1:
        raise DetectorError(f"the class branch of {logits!r} reads {len(head_inputs)} head inputs: {EXPECTED}")
    head_input = head_inputs.pop()
    nodes = tuple(sorted(inside.values(), key=lambda n: index.order[n.name]))
    reach = {logits: 0}
    for node in reversed(nodes):  # consumers before producers: a tensor's reach is final when its producer comes
        for name in node.input:
            if name and name not in index.constants:
                reach[name] = max(reach.get(name, 0), reach[node.output[0]] + _reach(node))
    return head_input, nodes, reach[head_input]


def _check_branch_node(node: onnx.NodeProto) -> None:
    if node.op_type == "Conv":
        a = attrs(node)
        kernel = [int(k) for k in a.get("kernel_shape", [])]
        pads = [int(p) for p in a.get("pads", [0] * 4)]
        same = all(k % 2 == 1 for k in kernel) and pads == [(k - 1) // 2 for k in kernel] * 2
        plain = set(a.get("strides", [1, 1])) == {1} and set(a.get("dilations", [1, 1])) == {1}
        if len(kernel) != 2 or kernel[0] != kernel[1] or not same or not plain or a.get("auto_pad"):
            raise DetectorError(f"the class branch's Conv {node.name!r} is not a square 'same' convolution at "
                                f"stride 1: {EXPECTED}")  # fmt: skip
        return
    if node.op_type not in ELEMENTWISE or record(node.op_type).rule is None:
        raise DetectorError(f"the class branch has {node.op_type} {node.name!r}; it may hold convolutions and "
                            f"element-wise ops only: {EXPECTED}")  # fmt: skip


def _reach(node: onnx.NodeProto) -> int:
    """How many cells further back one output of `node` reads."""
    if node.op_type == "Conv":
        return (int(attrs(node)["kernel_shape"][0]) - 1) // 2
    return 0
