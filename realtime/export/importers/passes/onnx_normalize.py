"""ONNX files as people have them, normalised before their head is analysed.

torch's default (dynamo) exporter writes opset 18+, Constant nodes, a batch of 1 baked into Reshape
targets and weights in a `.data` file; timm's `tf_*` models and EfficientNet ports compute "same"
padding at run time (Shape -> Slice -> Concat -> Pad), which leaves shape inference with unknown
shapes; `onnx.helper.make_model` writes an IR version onnxruntime may not read yet. Each pass here
turns one of these into what the rest of the exporter reads: constants as initializers, shape
arithmetic folded once H and W are fixed, a dynamic batch where that is checked to be safe.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from realtime.export.graph.index import GraphIndex, drop_unused_initializers
from realtime.export.graph.passes import drop_dead
from realtime.export.importers import ModelImportError
from realtime.export.importers.passes.probe import Probe
from realtime.export.ops import record

ORT_MAX_IR = 10  # onnxruntime 1.18 (the oldest this project supports) reads IR versions up to 10


def lower_ir_version(model: onnx.ModelProto) -> None:
    """An IR version newer than onnxruntime reads, lowered to the oldest one its opsets allow."""
    if model.ir_version <= ORT_MAX_IR:
        return
    try:
        lowest = onnx.helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    except Exception as exc:  # an opset onnx itself does not know
        raise ModelImportError(f"IR version {model.ir_version} with opsets onnx cannot place ({exc})") from exc
    if lowest > ORT_MAX_IR:
        raise ModelImportError(
            f"the file needs ONNX IR {lowest} for its opsets; onnxruntime here reads up to {ORT_MAX_IR}: "
            "re-export it with an older opset (torch.onnx.export(..., opset_version=17))"
        )
    model.ir_version = max(lowest, 7)


def constants_to_initializers(model: onnx.ModelProto) -> int:
    """Constant nodes become initializers of the same name, so every stage reads one kind of constant."""
    graph = model.graph
    moved = 0
    for node in [n for n in graph.node if n.op_type == "Constant" and n.domain in ("", "ai.onnx")]:
        attribute = node.attribute[0]
        if attribute.name == "value":
            array = numpy_helper.to_array(attribute.t)
        elif attribute.name in ("value_float", "value_int", "value_floats", "value_ints"):
            dtype = np.float32 if "float" in attribute.name else np.int64
            array = np.asarray(onnx.helper.get_attribute_value(attribute), dtype)
        else:
            continue  # sparse or string constants: left as they are
        graph.initializer.append(numpy_helper.from_array(np.asarray(array), node.output[0]))
        graph.node.remove(node)
        moved += 1
    return moved


def name_nodes(model: onnx.ModelProto) -> int:
    """A unique name for every unnamed node (onnx's helper and some exporters leave them empty): the
    backward, the pooled stop and int8's node lists all name nodes, and "" would name them all at once."""
    taken = {node.name for node in model.graph.node if node.name}
    named = 0
    for i, node in enumerate(model.graph.node):
        if node.name:
            continue
        name, k = f"{node.op_type}_{i}", 0
        while name in taken:
            k += 1
            name = f"{node.op_type}_{i}_{k}"
        node.name = name
        taken.add(name)
        named += 1
    return named


def choose_logits(model: onnx.ModelProto, wanted: str | None) -> str:
    """Keep one graph output: `wanted`, or the one with a class dimension ([N, classes], classes > 1)."""
    outputs = list(model.graph.output)
    names = [o.name for o in outputs]
    if wanted is not None:
        if wanted not in names:
            raise ModelImportError(f"--output-name {wanted!r}: the model's outputs are {', '.join(names)}")
        chosen = wanted
    else:
        ranked = [o.name for o in outputs if _class_dims(o)]
        if len(outputs) > 1 and not ranked:
            raise ModelImportError(
                f"which output are the logits? pass --output-name, one of {', '.join(names)} (a classifier's "
                "[N, classes]; a detector is read as one [N, 4 + classes, anchors] output, as `yolo export "
                "format=onnx` writes it)"
            )
        chosen = (ranked or names)[0]
    keep = [o for o in outputs if o.name == chosen]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    return chosen


def _class_dims(value: onnx.ValueInfoProto) -> bool:
    dims = value.type.tensor_type.shape.dim
    return len(dims) == 2 and dims[1].HasField("dim_value") and dims[1].dim_value > 1


@dataclass(frozen=True)
class Folded:
    tensors: int  # tensors now initializers
    nodes: int  # nodes removed


def shape_only_tensors(model: onnx.ModelProto) -> list[str]:
    """The tensors `fold_shape_arithmetic` may fold: those to read in the probe run."""
    return sorted(_shape_only(model, GraphIndex.of(model.graph)))


def fold_shape_arithmetic(model: onnx.ModelProto, seen: Probe) -> Folded:
    """Make initializers of the shape-only tensors (Shape, Size and what follows them) whose values the
    probe saw equal at batch 1 and 2.

    With H and W fixed this turns run-time "same" padding, reshape targets and scales into constants,
    so shape inference pins every tensor down. Tensors that depend on the batch stay computed.
    """
    shape_only = _shape_only(model, GraphIndex.of(model.graph))
    one, two = seen.one, seen.two or seen.one  # batch 2 does not run: a batch-1 graph, whose shapes are batch 1's
    same = {
        name for name in shape_only
        if name in one and name in two and one[name].shape == two[name].shape and np.array_equal(one[name], two[name])
    }  # fmt: skip
    folded = [n for n in model.graph.node if n.output and all(o in same for o in n.output if o)]
    if not folded:
        return Folded(0, 0)
    names = [o for n in folded for o in n.output if o]
    for name in names:
        model.graph.initializer.append(numpy_helper.from_array(np.asarray(one[name]), name))
    for node in folded:
        model.graph.node.remove(node)
    before = len(model.graph.node) + len(folded)
    drop_dead(model)
    drop_unused_initializers(model)
    return Folded(len(names), before - len(model.graph.node))


def _shape_only(model: onnx.ModelProto, index: GraphIndex) -> set[str]:
    """Tensors that depend on no tensor's values: Shape/Size outputs, and arithmetic on them and constants."""
    found: set[str] = set()
    for node in model.graph.node:
        inputs = [i for i in node.input if i]
        from_shapes = inputs and all(i in found or i in index.constants for i in inputs)
        if (record(node.op_type).reads_shape_only or from_shapes) and node.op_type != "Constant":
            found.update(o for o in node.output if o)
    return found
