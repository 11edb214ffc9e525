"""tf2onnx conversion of the weights-as-inputs function, then weight binding.

The small converted graph takes every weight as an input; here those inputs
become initializers, weight layout transposes that tf2onnx inserts for Conv
are folded into the stored arrays, outputs get the contract's names and the
metadata is written. Nothing is saved until the graph agrees with TF.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from realtime import contract
from realtime.export.graph import GradCamFunction

OPSET = 17


class SelfCheckError(RuntimeError):
    """The exported graph disagrees with TF's GradientTape; no file was written."""


def convert_function(fn: GradCamFunction) -> onnx.ModelProto:
    """Run tf2onnx on the small graph (weights are inputs, so nothing big is frozen)."""
    import tf2onnx

    proto, _ = tf2onnx.convert.from_function(fn.fn, input_signature=list(fn.input_signature), opset=OPSET)
    return proto


def _rename_value(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
    for value in list(graph.output) + list(graph.input) + list(graph.value_info):
        if value.name == old:
            value.name = new


def name_outputs(model: onnx.ModelProto, names: Sequence[str]) -> None:
    """Give the graph outputs the contract's names, in the order the function returns them."""
    outputs = list(model.graph.output)
    if len(outputs) != len(names):
        raise RuntimeError(f"converted graph has {len(outputs)} outputs, expected {len(names)}: {names}")
    for value, name in zip(outputs, names, strict=True):
        _rename_value(model.graph, value.name, name)


def bind_weights(model: onnx.ModelProto, names: Sequence[str], arrays: Sequence[np.ndarray]) -> None:
    """Turn the weight inputs into initializers holding `arrays`."""
    graph = model.graph
    wanted = dict(zip(names, arrays, strict=True))
    keep = [value for value in graph.input if value.name not in wanted]
    missing = set(wanted) - {value.name for value in graph.input}
    if missing:
        raise RuntimeError(f"converted graph lost weight inputs {sorted(missing)}")
    del graph.input[:]
    graph.input.extend(keep)
    for name, array in wanted.items():
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(array), name))


def input_uses(graph: onnx.GraphProto) -> Counter[str]:
    """How many node inputs read each value."""
    return Counter(name for node in graph.node for name in node.input)


def fold_initializer_transposes(model: onnx.ModelProto) -> int:
    """Store Conv kernels in the layout the graph reads them, instead of transposing at load.

    tf2onnx turns HWIO kernels into OIHW with a Transpose node, which it cannot
    fold while the kernel is an input. Folding here keeps the file plain and
    the session's load fast. Returns the number of folded nodes.
    """
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    uses = input_uses(graph)
    folded = 0
    for node in list(graph.node):
        if node.op_type != "Transpose" or node.input[0] not in inits or uses[node.input[0]] != 1:
            continue
        perm = _perm(node)
        source = inits.pop(node.input[0])
        array = numpy_helper.to_array(source)
        array = np.ascontiguousarray(np.transpose(array, perm) if perm else array.T)
        graph.initializer.remove(source)
        graph.initializer.append(numpy_helper.from_array(array, node.output[0]))
        inits[node.output[0]] = graph.initializer[-1]
        graph.node.remove(node)
        folded += 1
    return folded


FOLDABLE = {"Squeeze", "Unsqueeze", "Reshape", "Cast", "Identity"}


def fold_initializer_ops(model: onnx.ModelProto) -> int:
    """Evaluate shape-only ops whose inputs are all initializers (tf2onnx's bias Squeeze, mostly).

    With the weights bound late, tf2onnx could not fold them. onnxruntime would at load,
    but the int8 quantizer reads the file as it is and needs Conv biases as initializers.
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


def _perm(node: onnx.NodeProto) -> list[int] | None:
    return next((list(a.ints) for a in node.attribute if a.name == "perm"), None)


def backward_matmuls_to_gemm(model: onnx.ModelProto) -> int:
    """Rewrite Transpose(MatMul(W, Transpose(g))) as Gemm(g, W, transB=1).

    The backward computes g @ W^T with the weight on the left so no transposed
    copy of W is ever stored. onnxruntime then fuses the pattern into a
    FusedMatMul that reads fc1 about 50% slower than Gemm with transB does
    (19.5 ms against 12.5 ms on a 2-core AVX-512 CPU). Returns the rewrites.
    """
    graph = model.graph
    inits = {init.name for init in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    rewritten = 0
    for node in list(graph.node):
        if node.op_type != "MatMul" or node.input[0] not in inits:
            continue
        inner = producer.get(node.input[1])
        outer = consumers.get(node.output[0], [])
        if inner is None or inner.op_type != "Transpose" or _perm(inner) not in (None, [1, 0]):
            continue
        if len(outer) != 1 or outer[0].op_type != "Transpose" or _perm(outer[0]) not in (None, [1, 0]):
            continue
        if len(consumers.get(inner.output[0], [])) != 1:
            continue
        gemm = onnx.helper.make_node(
            "Gemm", [inner.input[0], node.input[0]], [outer[0].output[0]], name=f"{node.name}_gemm", transB=1
        )
        index = list(graph.node).index(node)
        for dead in (inner, node, outer[0]):
            graph.node.remove(dead)
        graph.node.insert(min(index, len(graph.node)), gemm)
        rewritten += 1
    return rewritten


def set_metadata(model: onnx.ModelProto, metadata: Mapping[str, str]) -> None:
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def build_metadata(
    labels: Sequence[str], layer: str, preprocessing: str, gradients: str, model_name: str, precision: str = "fp32"
) -> dict[str, str]:
    return {
        contract.META_CONTRACT: contract.CONTRACT_VERSION,
        contract.META_LABELS: json.dumps(list(labels)),
        contract.META_LAYER: layer,
        contract.META_PREPROCESSING: preprocessing,
        contract.META_GRADIENTS: gradients,
        contract.META_MODEL_NAME: model_name,
        contract.META_PRECISION: precision,
    }


@dataclass(frozen=True)
class CheckReport:
    """How far the ONNX graph is from TF's GradientTape on one random batch."""

    logits_rel: float
    weights_abs: float
    weights_rel: float
    cam_abs: float

    def ok(self, tolerance: float = 1e-4) -> bool:
        # weights are compared relative to their scale: with random weights their
        # magnitude depends on the initialiser, not on the correctness of the graph
        return self.logits_rel <= tolerance and self.weights_rel <= tolerance and self.cam_abs <= tolerance


def compare(onnx_out: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray]) -> CheckReport:
    def rel(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-12))

    return CheckReport(
        logits_rel=rel(onnx_out[contract.OUT_LOGITS], ref[contract.OUT_LOGITS]),
        weights_abs=float(np.abs(onnx_out[contract.OUT_WEIGHTS] - ref[contract.OUT_WEIGHTS]).max()),
        weights_rel=rel(onnx_out[contract.OUT_WEIGHTS], ref[contract.OUT_WEIGHTS]),
        cam_abs=float(np.abs(onnx_out[contract.OUT_CAM] - ref[contract.OUT_CAM]).max()),
    )


def run_onnx(path: str | Path, image: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    feeds: dict[str, Any] = {contract.INPUT_IMAGE: image}
    if contract.INPUT_TARGETS in {i.name for i in session.get_inputs()}:
        feeds[contract.INPUT_TARGETS] = targets
    return dict(zip(names, session.run(names, feeds), strict=True))


def save_checked(
    model: onnx.ModelProto,
    output: Path,
    check: Any,  # Callable[[Path], CheckReport | None]
) -> CheckReport | None:
    """Write to a temporary file, run `check` on it, and only then move it into place."""
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(suffix=".onnx.tmp", dir=output.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        onnx.save_model(model, str(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the model is an ordinary file
        report = check(tmp)
        os.replace(tmp, output)
        return report
    finally:
        if tmp.exists():
            tmp.unlink()
