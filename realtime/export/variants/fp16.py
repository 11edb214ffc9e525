"""An fp16 copy of a contract graph: half-precision weights and arithmetic, the contract's types outside.

The image stays uint8 in, the maps and logits float32 out. Two parts stay float32 on purpose:
the softmax of the probabilities, and the cam normalisation (its ReLU, peak and division: a
peak below fp16's range, or the 1e-30 guard against a zero map, would round to zero there).

One plan, two graphs: `to_fp16` writes the fp16 graph, `rounded_like_fp16` the same arithmetic
in float32 with every tensor the fp16 graph keeps in half precision rounded to it. A CPU has no
fp16 arithmetic to check the first on; the second measures what fp16 storage costs the maps,
on any CPU, in onnxruntime.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from realtime import contract
from realtime.export.graph.index import drop_unused_initializers, producers
from realtime.export.graph.passes import reroute_output
from realtime.export.graph.shapes import element_types
from realtime.export.ops import record

FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
WEIGHTED_SUM = "MatMul"  # contract_graph.normalised_cam: weights x activations; the normalisation follows it


def float32_nodes(model: onnx.ModelProto) -> frozenset[str]:
    """Names of the nodes that stay float32: the softmax of the probabilities, and each cam output's
    normalisation (every node from the output back to the weighted sum's MatMul, which stays fp16)."""
    made_by = producers(model.graph.node)
    kept: set[str] = set()
    outputs = {o.name for o in model.graph.output}
    if contract.OUT_PROBABILITIES in made_by:
        kept.add(made_by[contract.OUT_PROBABILITIES].name)
    cams = [name for name in outputs if name == contract.OUT_CAM or name.startswith(f"{contract.OUT_CAM}_")]
    stack = [made_by[name] for name in cams if name in made_by]
    while stack:
        node = stack.pop()
        if node.op_type == WEIGHTED_SUM or node.name in kept:
            continue
        kept.add(node.name)
        stack.extend(made_by[i] for i in node.input if i in made_by)
    kept.update(n.name for n in model.graph.node if record(n.op_type).typed_by_attribute)  # Constant's value
    return frozenset(kept)


def _float_tensors(model: onnx.ModelProto) -> set[str]:
    """Every float32 tensor of the graph (shape inference names the intermediate ones)."""
    found = {name for name, elem in element_types(model).items() if elem == FLOAT}
    return found | {init.name for init in model.graph.initializer if init.data_type == FLOAT}


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """The fp16 graph (a new model; `model` is left as it is)."""
    return _convert(model, emulate=False)


def rounded_like_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """float32 arithmetic, every tensor the fp16 graph holds in half precision rounded to it."""
    return _convert(model, emulate=True)


def _convert(source: onnx.ModelProto, emulate: bool) -> onnx.ModelProto:
    model = onnx.ModelProto()
    model.CopyFrom(source)
    graph = model.graph
    floats = _float_tensors(model)
    kept = float32_nodes(model)
    inits = {init.name: init for init in graph.initializer}
    half: dict[str, str] = {}  # float32 tensor -> its half-precision (or, emulating, rounded) twin
    full: dict[str, str] = {}  # half-precision tensor -> its float32 twin
    nodes: list[onnx.NodeProto] = []
    store = HALF if not emulate else FLOAT

    def as_half(name: str) -> str:
        if name not in half:
            if name in inits:  # weights: converted once (rounded through fp16 when emulating)
                rounded = numpy_helper.to_array(inits[name]).astype(np.float16)
                values = rounded if not emulate else rounded.astype(np.float32)
                graph.initializer.append(numpy_helper.from_array(values, f"{name}/fp16"))
            else:
                nodes.extend(_round(name, f"{name}/fp16", emulate))
            half[name] = f"{name}/fp16"
        return half[name]

    def as_float(name: str) -> str:
        if emulate:  # already float32, rounded where the fp16 graph would hold it in half precision
            return name
        if name not in full:
            nodes.append(_cast(name, f"{name}/fp32", FLOAT))
            full[name] = f"{name}/fp32"
        return full[name]

    computed_half: set[str] = set()  # tensors the fp16 graph holds in half precision
    for node in list(graph.node):
        low = node.name not in kept
        keep32 = set(record(node.op_type).fp32_inputs)
        for position, name in enumerate(node.input):
            if not name or name not in floats:
                continue
            wants_half = low and position not in keep32
            if wants_half and name not in computed_half:
                node.input[position] = as_half(name)
            elif not wants_half and name in computed_half:
                node.input[position] = as_float(name)
        after: list[onnx.NodeProto] = []
        if low:
            made = [o for o in node.output if o in floats]
            if node.op_type == "Cast" and _cast_target(node) == FLOAT:
                _set_cast_target(node, store)
            if emulate:  # computed in float32, then rounded to what the fp16 graph would store
                for position, name in enumerate(node.output):
                    if name in made:
                        node.output[position] = f"{name}/exact"
                        after.extend(_round(f"{name}/exact", name, emulate=True))
            computed_half.update(made)
        nodes.append(node)
        nodes.extend(after)
    del graph.node[:]
    graph.node.extend(nodes)  # each Cast sits before its reader and after its input's producer
    _outputs_float(model, computed_half, emulate)
    del graph.value_info[:]
    drop_unused_initializers(model)
    return model


def _round(source: str, target: str, emulate: bool) -> list[onnx.NodeProto]:
    """`target` = `source` in half precision; emulating, rounded to it and back to float32."""
    if not emulate:
        return [_cast(source, target, HALF)]
    return [_cast(source, f"{target}/half", HALF), _cast(f"{target}/half", target, FLOAT)]


def _cast(source: str, target: str, to: int) -> onnx.NodeProto:
    return onnx.helper.make_node("Cast", [source], [target], name=f"fp16/{target}", to=to)


def _cast_target(node: onnx.NodeProto) -> int:
    return next(a.i for a in node.attribute if a.name == "to")


def _set_cast_target(node: onnx.NodeProto, to: int) -> None:
    next(a for a in node.attribute if a.name == "to").i = to


def _outputs_float(model: onnx.ModelProto, computed_half: set[str], emulate: bool) -> None:
    """Graph outputs made in half precision get a Cast to float32 under their contract name."""
    if emulate:
        return
    graph = model.graph
    for output in [o.name for o in graph.output if o.name in computed_half]:
        at = reroute_output(graph, output, f"{output}/fp16")
        graph.node.insert(at, _cast(f"{output}/fp16", output, FLOAT))
