"""Reading an ONNX graph: attributes, who makes and reads each tensor, constants, a topological order.

Written once here; every stage that walks a graph reads it through these.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper


def attrs(node: onnx.NodeProto) -> dict[str, Any]:
    """A node's attributes as Python values (strings stay bytes, as onnx gives them)."""
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def text(value: Any, default: str = "") -> str:
    """A string attribute (onnx gives bytes) as str."""
    if value is None:
        return default
    return value.decode() if isinstance(value, bytes) else str(value)


def perm(node: onnx.NodeProto) -> list[int] | None:
    """A Transpose's permutation, or None when it reverses the axes by default."""
    listed = attrs(node).get("perm")
    return [int(p) for p in listed] if listed is not None else None


def producers(nodes: Iterable[onnx.NodeProto]) -> dict[str, onnx.NodeProto]:
    """Tensor name -> the node that makes it."""
    return {out: node for node in nodes for out in node.output}


class InitializerValues(Mapping[str, np.ndarray]):
    """The graph's initializers by name, each converted to numpy when first read: the passes that look
    for small index and shape constants do not copy a VGG16's half-gigabyte of weights to find them."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self._protos = {init.name: init for init in graph.initializer}
        self._values: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._values:
            self._values[name] = numpy_helper.to_array(self._protos[name])
        return self._values[name]

    def __contains__(self, name: object) -> bool:
        return name in self._protos

    def __iter__(self) -> Iterator[str]:
        return iter(self._protos)

    def __len__(self) -> int:
        return len(self._protos)


@dataclass(frozen=True)
class GraphIndex:
    """Who makes and who reads each tensor, and which tensors are constants."""

    producer: Mapping[str, onnx.NodeProto]
    consumers: Mapping[str, tuple[onnx.NodeProto, ...]]
    constants: frozenset[str]
    order: Mapping[str, int]  # node name -> position in a topological order

    @staticmethod
    def of(graph: onnx.GraphProto) -> GraphIndex:
        producer: dict[str, onnx.NodeProto] = {}
        consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for name in node.output:
                producer[name] = node
            for name in node.input:
                consumers.setdefault(name, []).append(node)
        constants = {init.name for init in graph.initializer}
        for node in graph.node:  # topological: a node of constants is a constant
            if node.op_type == "Constant" or (node.input and all(i in constants for i in node.input if i)):
                constants.update(node.output)
        order = {node.name: i for i, node in enumerate(graph.node)}
        return GraphIndex(producer, {k: tuple(v) for k, v in consumers.items()}, frozenset(constants), order)

    def ancestors(self, name: str) -> set[str]:
        """Every tensor `name` is computed from (including itself)."""
        seen, queue = {name}, deque([name])
        while queue:
            node = self.producer.get(queue.popleft())
            for parent in node.input if node is not None else ():
                if parent and parent not in seen:
                    seen.add(parent)
                    queue.append(parent)
        return seen


def topological(nodes: Sequence[onnx.NodeProto], available: Iterable[str]) -> list[onnx.NodeProto]:
    """`nodes` ordered so each comes after the producers of its inputs; stable (ties keep their order).

    `available` names what exists before any node runs (graph inputs, initializers). Inputs that no
    node makes and that are not available are refused: the graph would not load.
    """
    ready_names = set(available) | {""}
    made = {out: index for index, node in enumerate(nodes) for out in node.output}
    missing = [name for node in nodes for name in node.input if name not in ready_names and name not in made]
    if missing:
        raise ValueError(f"graph reads tensors nothing produces: {sorted(set(missing))[:5]}")
    waiting_on = [{made[name] for name in node.input if name not in ready_names and name in made} for node in nodes]
    readers: dict[int, list[int]] = {}
    for index, deps in enumerate(waiting_on):
        for dep in deps:
            readers.setdefault(dep, []).append(index)
    ready = [index for index, deps in enumerate(waiting_on) if not deps]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        index = heapq.heappop(ready)
        order.append(index)
        for reader in readers.get(index, ()):
            waiting_on[reader].discard(index)
            if not waiting_on[reader]:
                heapq.heappush(ready, reader)
    if len(order) != len(nodes):
        raise ValueError("graph has a cycle")
    return [nodes[i] for i in order]


def names_read(graph: onnx.GraphProto) -> set[str]:
    """Every tensor a node reads, in its subgraphs (If, Loop) too, and every graph output."""
    names = {output.name for output in graph.output}
    for node in graph.node:
        names.update(node.input)
        for attribute in node.attribute:
            for subgraph in (*attribute.graphs, *([attribute.g] if attribute.HasField("g") else [])):
                names |= names_read(subgraph)
    return names


def drop_unused_initializers(model: onnx.ModelProto) -> int:
    """Remove initializers that no node (subgraphs included) and no graph output reads. Returns how many went."""
    graph = model.graph
    used = names_read(graph)
    keep = [init for init in graph.initializer if init.name in used]
    removed = len(graph.initializer) - len(keep)
    if removed:
        del graph.initializer[:]
        graph.initializer.extend(keep)
    return removed
