"""Import passes: what every imported forward graph goes through before its head is analysed.

Folding ops whose inputs are all constants (the records say which: shape ops, and the arithmetic
tf2onnx leaves on constants, such as a batch norm's gamma / sqrt(var + eps)), and 1x1 pools that
are identities.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from realtime.export.graph.index import attrs
from realtime.export.graph.passes import fold_initializer_transposes, input_uses
from realtime.export.ops import record

__all__ = ["fold_initializer_ops", "fold_initializer_transposes", "noop_pools_to_identity"]


def fold_initializer_ops(model: onnx.ModelProto) -> int:
    """Evaluate ops whose inputs are all initializers (tf2onnx's bias Squeeze, its batch-norm constants).

    The int8 quantizer reads the file as it is and needs Conv biases as initializers.
    """
    from onnx.reference import ReferenceEvaluator

    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    uses = input_uses(graph)
    folded = 0
    for node in list(graph.node):  # topological order: a chain folds in one pass
        if not record(node.op_type).folds_on_constants or not all(i in inits for i in node.input if i):
            continue
        feeds = {i: numpy_helper.to_array(inits[i]) for i in node.input if i}
        sub = onnx.helper.make_graph([node], "fold", [], [onnx.helper.make_tensor_value_info(node.output[0], 0, None)])
        (value,) = ReferenceEvaluator(onnx.helper.make_model(sub, opset_imports=model.opset_import)).run(None, feeds)
        graph.node.remove(node)
        for name in filter(None, node.input):
            uses[name] -= 1
            if uses[name] == 0:
                graph.initializer.remove(inits.pop(name))
        graph.initializer.append(numpy_helper.from_array(np.asarray(value), node.output[0]))
        inits[node.output[0]] = graph.initializer[-1]
        folded += 1
    return folded


def noop_pools_to_identity(model: onnx.ModelProto) -> int:
    """A 1x1 pool with stride 1 and no padding (torchvision VGG's 7x7 -> 7x7 adaptive pool) is an Identity."""
    changed = 0
    for node in model.graph.node:
        if record(node.op_type).pooled != "window" or len(node.output) != 1:
            continue
        a = attrs(node)
        kernel = list(a.get("kernel_shape", []))
        unit = kernel and all(k == 1 for k in kernel) and all(s == 1 for s in a.get("strides", kernel))
        if unit and not any(a.get("pads", [])):
            del node.attribute[:]
            node.op_type = "Identity"
            changed += 1
    return changed
