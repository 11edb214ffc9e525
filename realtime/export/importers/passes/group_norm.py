"""GroupNormalization written as torch writes a GroupNorm.

The ONNX op (opset 18: a scale per group; 21: per channel) is a function with no shape inference of
its own, so nothing after it would have a static shape. torch's exporters write the same arithmetic
as Reshape([N, groups, -1]), InstanceNormalization, then the scale per channel: ops whose shapes ONNX
infers and whose derivatives the op table already has.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from realtime.export.graph.index import InitializerValues, attrs


def group_norms_as_instance_norms(model: onnx.ModelProto) -> int:
    """Rewrite each GroupNormalization with a constant scale and bias; returns how many were rewritten."""
    graph = model.graph
    inits = InitializerValues(graph)
    rewritten = 0
    for node in [n for n in graph.node if n.op_type == "GroupNormalization"]:
        if len(node.input) < 3 or node.input[1] not in inits or node.input[2] not in inits:
            continue
        groups = int(attrs(node)["num_groups"])
        scale, bias = (inits[name].astype(np.float32).ravel() for name in node.input[1:3])
        stem, x = node.output[0], node.input[0]
        per_group = scale.size == groups
        constants: dict[str, np.ndarray] = {
            "groups": np.array([0, groups, -1], np.int64),
            "group_scale": scale if per_group else np.ones(groups, np.float32),
            "group_bias": bias if per_group else np.zeros(groups, np.float32),
        }
        if not per_group:  # opset 21: a scale per channel, applied on [N, C, -1]
            constants |= {"channels": np.array([0, scale.size, -1], np.int64),
                          "scale": scale.reshape(-1, 1), "bias": bias.reshape(-1, 1)}  # fmt: skip
        graph.initializer.extend(numpy_helper.from_array(v, f"{stem}/{k}") for k, v in constants.items())
        make = onnx.helper.make_node
        nodes = [
            make("Reshape", [x, f"{stem}/groups"], [f"{stem}/grouped"]),
            make("InstanceNormalization", [f"{stem}/grouped", f"{stem}/group_scale", f"{stem}/group_bias"],
                 [f"{stem}/standardised"], epsilon=float(attrs(node).get("epsilon", 1e-5))),
            make("Shape", [x], [f"{stem}/shape"]),
        ]  # fmt: skip
        last = f"{stem}/standardised"
        if not per_group:
            nodes += [
                make("Reshape", [last, f"{stem}/channels"], [f"{stem}/per_channel"]),
                make("Mul", [f"{stem}/per_channel", f"{stem}/scale"], [f"{stem}/scaled"]),
                make("Add", [f"{stem}/scaled", f"{stem}/bias"], [f"{stem}/shifted"]),
            ]
            last = f"{stem}/shifted"
        nodes.append(make("Reshape", [last, f"{stem}/shape"], [stem]))
        at = list(graph.node).index(node)
        graph.node.remove(node)
        for offset, added in enumerate(nodes):
            added.name = f"{node.name}/{added.op_type}_{offset}"
            graph.node.insert(at + offset, added)
        rewritten += 1
    return rewritten
