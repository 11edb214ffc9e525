"""Graph passes that change no result: drop dead nodes, fold constants, sort topologically.

Sorting is what makes every written graph pass `onnx.checker` with
`full_check=True` and load in TensorRT's parser: the builders append nodes
wherever it is convenient, and this puts each after its inputs.
"""

from __future__ import annotations

from collections import Counter, deque

import numpy as np
import onnx
from onnx import numpy_helper

from realtime.export.graph.index import drop_unused_initializers, perm, producers, topological


def input_uses(graph: onnx.GraphProto) -> Counter[str]:
    """How many node inputs read each value."""
    return Counter(name for node in graph.node for name in node.input)


def drop_dead(model: onnx.ModelProto) -> int:
    """Remove nodes and initializers no graph output depends on. Returns the nodes removed."""
    graph = model.graph
    producer = producers(graph.node)
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
    drop_unused_initializers(model)
    return removed


def topological_sort(model: onnx.ModelProto) -> None:
    """Order nodes so each comes after the producers of its inputs (stable: ties keep their order)."""
    graph = model.graph
    available = [i.name for i in graph.input] + [init.name for init in graph.initializer]
    copies = topological(list(graph.node), available)
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
        order = perm(node)
        source = inits.pop(node.input[0])
        array = numpy_helper.to_array(source)
        array = np.ascontiguousarray(np.transpose(array, order) if order else array.T)
        graph.initializer.remove(source)
        graph.initializer.append(numpy_helper.from_array(array, node.output[0]))
        inits[node.output[0]] = graph.initializer[-1]
        graph.node.remove(node)
        folded += 1
    return folded


def relu_before_reshape(model: onnx.ModelProto) -> int:
    """Relu(Reshape(x)) -> Reshape(Relu(x)) where nothing else reads Reshape(x): the same values, and a
    convolution that makes x then runs the ReLU as its fused activation (guided backpropagation's
    positive part, after each backward convolution). Returns the nodes moved."""
    graph = model.graph
    producer = producers(graph.node)
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


def reroute_output(graph: onnx.GraphProto, output: str, inner: str) -> int:
    """The node that makes graph output `output` makes `inner` instead, and every node that read `output`
    reads `inner` (graphs exported before outputs were leaves have readers). Returns the position right
    after that node: where a node making `output` again (a Cast, say) goes."""
    for node in graph.node:
        for position, name in enumerate(node.input):
            if name == output:
                node.input[position] = inner
    for at, node in enumerate(graph.node):
        if output in node.output:
            node.output[list(node.output).index(output)] = inner
            return at + 1
    raise ValueError(f"no node makes {output}")
