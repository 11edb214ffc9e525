"""What every derivative rule shares: the gradient's form, the builder, shapes and constant values.

A rule receives the gradient of a node's output for every target and returns
one gradient per input (None where none flows). Gradients carry an extra target
axis K after the batch axis: [N, K, *dims]. Across Dense layers they travel
features-first, [F, N, K], so each weight is read as Gemm's first operand, the
form onnxruntime runs fastest and OpenVINO computes right when the forward
shares that weight.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import onnx
from onnx import numpy_helper

from realtime.export.graph.builder import GraphBuilder
from realtime.export.graph.index import attrs, perm


@dataclass(frozen=True)
class Padding:
    """A gradient that is `source` padded with zeros along one axis of [N, K, *dims], from `start` to
    `stop` of `extent`: built only when read, so pieces that tile the axis (q, k and v picked out of
    one packed projection) are joined by one Concat instead of padded and added."""

    source: str
    axis: int
    start: int
    stop: int
    extent: int
    rank: int


@dataclass(frozen=True)
class Grad:
    """A gradient tensor and its form; `onehot` (the seed at the logits) and `padding` are not built
    until needed."""

    name: str
    features_first: bool = False
    onehot: bool = False
    relu_taken: bool = False  # a max pool already applied the ReLU before it (Context.relu_before)
    padding: Padding | None = None


class RuleError(ValueError):
    """A supported op type with attributes or inputs this backward cannot handle."""


class Context:
    """What every rule shares: the builder, static shapes, constant values, classes and [N, K]."""

    def __init__(
        self,
        builder: GraphBuilder,
        shapes: Mapping[str, tuple[int, ...]],
        classes: str,
        num_classes: int,
        guided: bool = False,
        wanted: frozenset[str] = frozenset(),
        head_nodes: Sequence[onnx.NodeProto] = (),
    ) -> None:
        self.b = builder
        self.guided = guided  # guided backpropagation: ReLUs pass only positive gradients
        self.wanted = wanted  # tensors whose own gradient must be built (captures, the target)
        self.shapes = shapes
        self.classes = classes
        self.num_classes = num_classes
        self.nk = builder.op("Shape", [classes], hint="nk")
        self._inits = {init.name: init for init in builder.graph.initializer}
        self._constant_nodes = {n.output[0]: n for n in builder.graph.node if n.op_type == "Constant"}
        self._copies = {n.output[0]: n.input[0] for n in builder.graph.node if n.op_type == "Identity"}
        # the forward nodes the gradient flows through: other readers (outputs, other passes) carry none
        self._producers = {name: n for n in head_nodes for name in n.output}
        self._readers = Counter(name for n in head_nodes for name in n.input)
        self._lifted: dict[tuple[str, bool], str] = {}
        self._arrays: dict[str, np.ndarray] = {}

    def value(self, name: str) -> np.ndarray | None:
        """The value of a constant input (also through Identity copies), or None for a computed tensor."""
        while name in self._copies and name not in self._inits:
            name = self._copies[name]
        if name in self._inits:  # read once: several rules may ask for VGG16's 400 MB fc1
            if name not in self._arrays:
                self._arrays[name] = numpy_helper.to_array(self._inits[name])
                self._arrays[name].setflags(write=False)  # shared between rules: none may change it
            return self._arrays[name]
        node = self._constant_nodes.get(name)
        if node is not None:
            return np.asarray(numpy_helper.to_array(attrs(node)["value"]))
        return None

    def relu_before(self, x: str) -> onnx.NodeProto | None:
        """The ReLU that made `x`, when one head node reads `x` and nobody wants x's own gradient.

        Its derivative can then be taken where that reader is cheaper (a max pool's output: 4x smaller).
        """
        node = self._producers.get(x)
        if node is None or node.op_type != "Relu" or self._readers[x] != 1 or x in self.wanted:
            return None
        return node

    def untransposed(self, x: str) -> str | None:
        """The input of the Transpose that made `x` by swapping its last two axes (attention's K^T), or None.

        A product's backward wants x^T: reading that input is free, where transposing `x` back costs a
        copy and keeps the forward's own Transpose from fusing into its MatMul.
        """
        node = self._producers.get(x)
        if node is None or node.op_type != "Transpose" or x not in self.shapes:
            return None
        rank = len(self.shapes[x]) + 1
        return node.input[0] if perm(node) == [*range(rank - 2), rank - 1, rank - 2] else None

    def dims(self, name: str) -> tuple[int, ...]:
        if name not in self.shapes:
            raise RuleError(
                f"tensor {name!r} has no static shape per image: either its first axis is not the batch "
                "(Swin's windows or attention heads folded into it: pick a layer after them) or the model "
                "was exported without fixed spatial sizes (pass --input-size HxW)"
            )
        return self.shapes[name]

    # ----------------------------------------------------------------- forms

    def materialize(self, g: Grad) -> Grad:
        """The seed as a [N, K, C] one-hot of the classes; a padding as its Pad."""
        if g.padding is not None:
            pad = g.padding
            before, after = [0] * pad.rank, [0] * pad.rank
            before[pad.axis], after[pad.axis] = pad.start, pad.extent - pad.stop
            return Grad(self.b.op("Pad", [pad.source, self.b.ints(before + after)]))
        if not g.onehot:
            return g
        b = self.b
        classes = b.unsqueeze(self.classes, [2])
        arange = b.const(np.arange(self.num_classes, dtype=np.int64), "arange")
        return Grad(b.mask(b.op("Equal", [classes, arange])))

    def joined(self, grads: Sequence[Grad]) -> Grad | None:
        """Paddings of one tensor that tile their axis exactly, as one Concat; None for any others."""
        pads = [g.padding for g in grads]
        if len(pads) < 2 or any(p is None for p in pads):
            return None
        ordered = sorted((p for p in pads if p is not None), key=lambda p: p.start)
        first_pad = ordered[0]
        same = all((p.axis, p.extent, p.rank) == (first_pad.axis, first_pad.extent, first_pad.rank) for p in ordered)
        tiled = first_pad.start == 0 and ordered[-1].stop == first_pad.extent
        if not same or not tiled or any(a.stop != b.start for a, b in pairwise(ordered)):
            return None
        return Grad(self.b.concat([p.source for p in ordered], axis=first_pad.axis))

    def normal(self, g: Grad) -> str:
        g = self.materialize(g)
        return self.b.transpose(g.name, [1, 2, 0]) if g.features_first else g.name

    def features_first(self, g: Grad) -> str:
        g = self.materialize(g)
        return g.name if g.features_first else self.b.transpose(g.name, [2, 0, 1])

    def lift(self, x: str, features_first: bool) -> str:
        """A forward tensor [N, *dims] shaped to broadcast against a gradient of the given form."""
        key = (x, features_first)
        if key not in self._lifted:
            if features_first:
                self._lifted[key] = self.b.unsqueeze(self.b.transpose(x, [1, 0]), [2])
            else:
                self._lifted[key] = self.b.unsqueeze(x, [1])
        return self._lifted[key]

    def unflat(self, x: str, dims: tuple[int, ...]) -> str:
        """[N*K, *dims] (how convolutions take the targets) -> [N, K, *dims], N and K read from the classes."""
        return self.b.reshape(x, self.b.concat([self.nk, self.b.ints(list(dims))]))

    def back_to(self, g: str, dims: tuple[int, ...]) -> str:
        """A normal-form gradient reshaped to [N, K, *dims]."""
        return self.b.reshape(g, [0, 0, *dims])


Grads = tuple[Grad | None, ...]  # one per node input, None where no gradient flows
Rule = Callable[[Context, onnx.NodeProto, Grad, tuple[int, ...]], Grads]


def grads_at(node: onnx.NodeProto, given: Mapping[int, Grad]) -> Grads:
    """A rule's answer: the gradients of the inputs at the given positions, None at the others."""
    return tuple(given.get(i) for i in range(len(node.input)))


def first(node: onnx.NodeProto, grad: Grad) -> Grads:
    """A rule's answer when only the data input (position 0) takes a gradient."""
    return grads_at(node, {0: grad})
