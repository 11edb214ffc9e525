"""Graph passes that change no result: drop dead nodes, fold constants, sort topologically.

Sorting is what makes every written graph pass `onnx.checker` with
`full_check=True` and load in TensorRT's parser: the builders append nodes
wherever it is convenient, and this puts each after its inputs.
"""

from __future__ import annotations

import heapq
from collections import Counter, deque

import numpy as np
import onnx
from onnx import numpy_helper


def input_uses(graph: onnx.GraphProto) -> Counter[str]:
    """How many node inputs read each value."""
    return Counter(name for node in graph.node for name in node.input)


def drop_dead(model: onnx.ModelProto) -> int:
    """Remove nodes and initializers no graph output depends on. Returns the nodes removed."""
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    alive: set[int] = set()
    queue = deque(o.name for o in graph.output)
    seen: set[str] = set()
    while queue:
        name = queue.popleft()
        if name in seen:
            continue
        seen.add(name)
        node = producer.get(name)
        if node is not None and id(node) not in alive:
            alive.add(id(node))
            queue.extend(i for i in node.input if i)
    keep = [node for node in graph.node if id(node) in alive]
    removed = len(graph.node) - len(keep)
    if removed:
        del graph.node[:]
        graph.node.extend(keep)
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    inits = [init for init in graph.initializer if init.name in used]
    if len(inits) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(inits)
    return removed


def topological_sort(model: onnx.ModelProto) -> None:
    """Order nodes so each comes after the producers of its inputs (stable: ties keep their order)."""
    graph = model.graph
    available = {i.name for i in graph.input} | {init.name for init in graph.initializer} | {""}
    nodes = list(graph.node)
    producer = {out: index for index, node in enumerate(nodes) for out in node.output}
    waiting_on = [
        {producer[name] for name in node.input if name not in available and name in producer} for node in nodes
    ]
    missing = [name for node in nodes for name in node.input if name not in available and name not in producer]
    if missing:
        raise ValueError(f"graph reads tensors nothing produces: {sorted(set(missing))[:5]}")
    readers: dict[int, list[int]] = {}
    for index, deps in enumerate(waiting_on):
        for dep in deps:
            readers.setdefault(dep, []).append(index)
    ready = [index for index, deps in enumerate(waiting_on) if not deps]
    order: list[int] = []
    heapq.heapify(ready)
    while ready:
        index = heapq.heappop(ready)
        order.append(index)
        for reader in readers.get(index, ()):
            waiting_on[reader].discard(index)
            if not waiting_on[reader]:
                heapq.heappush(ready, reader)
    if len(order) != len(nodes):
        raise ValueError("graph has a cycle")
    copies = [nodes[i] for i in order]
    sorted_nodes = [onnx.NodeProto() for _ in copies]
    for target, source in zip(sorted_nodes, copies, strict=True):
        target.CopyFrom(source)
    del graph.node[:]
    graph.node.extend(sorted_nodes)


def fold_initializer_transposes(model: onnx.ModelProto) -> int:
    """Store Conv kernels in the layout the graph reads them, instead of transposing at load.

    tf2onnx turns HWIO kernels into OIHW with a Transpose node, which it cannot
    fold while the kernel is an input. Returns the number of folded nodes.
    """
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    uses = input_uses(graph)
    folded = 0
    for node in list(graph.node):
        if node.op_type != "Transpose" or node.input[0] not in inits or uses[node.input[0]] != 1:
            continue
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        source = inits.pop(node.input[0])
        array = numpy_helper.to_array(source)
        array = np.ascontiguousarray(np.transpose(array, perm) if perm else array.T)
        graph.initializer.remove(source)
        graph.initializer.append(numpy_helper.from_array(array, node.output[0]))
        inits[node.output[0]] = graph.initializer[-1]
        graph.node.remove(node)
        folded += 1
    return folded


# shape ops, and the arithmetic tf2onnx leaves on constants (a batch norm's gamma / sqrt(var + eps))
FOLDABLE = {"Squeeze", "Unsqueeze", "Reshape", "Cast", "Identity", "Mul", "Add", "Sub", "Div", "Sqrt", "Reciprocal"}


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
        if node.op_type not in FOLDABLE or not all(i in inits for i in node.input if i):
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
        if node.op_type not in ("AveragePool", "MaxPool") or len(node.output) != 1:
            continue
        a = {attr.name: onnx.helper.get_attribute_value(attr) for attr in node.attribute}
        kernel = list(a.get("kernel_shape", []))
        unit = kernel and all(k == 1 for k in kernel) and all(s == 1 for s in a.get("strides", kernel))
        if unit and not any(a.get("pads", [])):
            del node.attribute[:]
            node.op_type = "Identity"
            changed += 1
    return changed


def relu_before_reshape(model: onnx.ModelProto) -> int:
    """Relu(Reshape(x)) -> Reshape(Relu(x)) where nothing else reads Reshape(x): the same values, and a
    convolution that makes x then runs the ReLU as its fused activation (guided backpropagation's
    positive part, after each backward convolution). Returns the nodes moved."""
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    uses = input_uses(graph)
    graph_outputs = {o.name for o in graph.output}
    moved = 0
    for relu in graph.node:
        reshape = producer.get(relu.input[0]) if relu.op_type == "Relu" else None
        if reshape is None or reshape.op_type != "Reshape" or uses[reshape.output[0]] != 1:
            continue
        if reshape.output[0] in graph_outputs:  # a graph output keeps its shape
            continue
        data, shaped, out = reshape.input[0], reshape.output[0], relu.output[0]
        relu.input[0], relu.output[0] = data, shaped  # Relu(x) under the reshape's old output name
        reshape.input[0], reshape.output[0] = shaped, out
        moved += 1
    return moved


def finish(model: onnx.ModelProto) -> onnx.ModelProto:
    """The passes every written graph goes through, in order."""
    drop_dead(model)
    relu_before_reshape(model)
    topological_sort(model)
    return model
