"""Appending nodes to an ONNX graph with unique names and opset-correct forms.

The backward, the contract outputs and the preprocessing are all written
through this one helper, so every op is emitted the same way whatever the
source model's opset (axes moved from attributes to inputs at 13 and 18).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

MIN_OPSET = 13


def set_metadata(model: onnx.ModelProto, key: str, value: str) -> None:
    """Set one metadata_props entry, replacing the one of that key if there is one."""
    entry = next((p for p in model.metadata_props if p.key == key), None) or model.metadata_props.add()
    entry.key, entry.value = key, value


def model_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


class GraphBuilder:
    """Adds nodes and constants to `model.graph`; names never collide with the model's own."""

    def __init__(self, model: onnx.ModelProto, prefix: str = "gradcam") -> None:
        self.model = model
        self.graph = model.graph
        self.opset = model_opset(model)
        if self.opset < MIN_OPSET:
            raise ValueError(f"opset {self.opset} is below {MIN_OPSET}; convert the model first")
        self.prefix = prefix
        self._taken = {name for node in self.graph.node for name in (*node.input, *node.output, node.name)}
        self._taken |= {init.name for init in self.graph.initializer}
        self._taken |= {value.name for value in (*self.graph.input, *self.graph.output)}
        self._constants: dict[tuple[bytes, str, tuple[int, ...]], str] = {}
        self._count = 0

    def fresh(self, hint: str) -> str:
        """A name nothing in the graph uses yet."""
        while True:
            self._count += 1
            name = f"{self.prefix}/{hint}_{self._count}"
            if name not in self._taken:
                self._taken.add(name)
                return name

    def const(self, value: Any, hint: str = "const", dtype: Any = None) -> str:
        """An initializer holding `value`; equal small constants are stored once."""
        array = np.asarray(value, dtype=dtype)
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        key = (array.tobytes(), array.dtype.str, array.shape)
        if array.size <= 64 and key in self._constants:
            return self._constants[key]
        name = self.fresh(hint)
        self.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        if array.size <= 64:
            self._constants[key] = name
        return name

    def scalar(self, value: int | float, dtype: Any = np.int64, hint: str = "scalar") -> str:
        """A rank-0 initializer (`const` stores at least one axis): what Range's bounds and a Gather that drops
        its axis need."""
        name = self.fresh(hint)
        self.graph.initializer.append(numpy_helper.from_array(np.array(value, dtype=dtype), name))
        return name

    def ints(self, values: Sequence[int]) -> str:
        return self.const(np.asarray(list(values), np.int64), "shape")

    def op(self, op_type: str, inputs: Sequence[str], hint: str | None = None, **attrs: Any) -> str:
        """Append one node and return its output."""
        return self.ops(op_type, inputs, 1, hint, **attrs)[0]

    def ops(
        self, op_type: str, inputs: Sequence[str], outputs: int, hint: str | None = None, **attrs: Any
    ) -> list[str]:
        """Append one node with several outputs."""
        names = [self.fresh(hint or op_type.lower()) for _ in range(outputs)]
        node = onnx.helper.make_node(op_type, list(inputs), names, name=self.fresh(op_type), **attrs)
        self.graph.node.append(node)
        return names

    def named(self, op_type: str, inputs: Sequence[str], output: str, **attrs: Any) -> str:
        """Append a node whose output has a fixed name (a contract output)."""
        self.graph.node.append(
            onnx.helper.make_node(op_type, list(inputs), [output], name=self.fresh(op_type), **attrs)
        )
        self._taken.add(output)
        return output

    # ----------------------------------------------------------------- opset-dependent forms

    def unsqueeze(self, x: str, axes: Sequence[int]) -> str:
        return self.op("Unsqueeze", [x, self.ints(axes)])

    def squeeze(self, x: str, axes: Sequence[int]) -> str:
        return self.op("Squeeze", [x, self.ints(axes)])

    def reduce(self, op_type: str, x: str, axes: Sequence[int], keepdims: bool = True) -> str:
        """ReduceSum / ReduceMean / ReduceMax over `axes`, whichever form the opset wants."""
        axes_as_input = op_type == "ReduceSum" or self.opset >= 18
        if axes_as_input:
            return self.op(op_type, [x, self.ints(axes)], keepdims=int(keepdims))
        return self.op(op_type, [x], axes=list(axes), keepdims=int(keepdims))

    # ----------------------------------------------------------------- small conveniences

    def reshape(self, x: str, shape: Sequence[int] | str) -> str:
        return self.op("Reshape", [x, shape if isinstance(shape, str) else self.ints(shape)])

    def transpose(self, x: str, perm: Sequence[int]) -> str:
        return self.op("Transpose", [x], perm=list(perm))

    def cast(self, x: str, to: int = TensorProto.FLOAT) -> str:
        return self.op("Cast", [x], to=to)

    def mul(self, a: str, b: str) -> str:
        return self.op("Mul", [a, b])

    def scale(self, x: str, factor: float) -> str:
        return x if factor == 1.0 else self.mul(x, self.const(np.float32(factor), "scale"))

    def mask(self, condition: str) -> str:
        """A boolean tensor as 0/1 floats."""
        return self.cast(condition)

    def slice(self, x: str, starts: Sequence[int] | str, ends: Sequence[int] | str, axes: Sequence[int]) -> str:
        def as_input(v: Sequence[int] | str) -> str:
            return v if isinstance(v, str) else self.ints(v)

        return self.op("Slice", [x, as_input(starts), as_input(ends), self.ints(axes)])

    def concat(self, parts: Sequence[str], axis: int = 0) -> str:
        return self.op("Concat", list(parts), axis=axis)
