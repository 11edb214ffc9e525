"""An onnxruntime session of an in-memory graph, for the exporter's own probes and checks.

A large graph's weights do not go through protobuf: serializing VGG16's 528 MB for onnxruntime, which
then parses it again, took 2-5 s per session. The session gets a copy of the graph whose large
initializers are external-data stubs, and their values as arrays (`add_external_initializers`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import Message

from realtime.export.graph.index import names_read

IN_MEMORY = 1 << 16  # bytes: initializers at least this large reach the session as arrays
NUMPY_NATIVE = frozenset({
    onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.INT8,
    onnx.TensorProto.UINT8, onnx.TensorProto.INT32, onnx.TensorProto.INT64,
})  # fmt: skip  # types numpy holds as onnxruntime does (not bfloat16 or float8: they stay serialized)


def cpu_session(model: onnx.ModelProto, optimize: bool = True, outputs: Sequence[str] | None = None) -> Any:
    """A quiet CPU session; `optimize=False` runs every node as written (no fused float32 kernels in a
    float64 head, no constant folding of what a probe reads). `outputs`: inner tensors the session gives
    instead of the graph's outputs (its own copy of the graph gets them; `model` is not changed)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    stub, names, arrays = _without_large_weights(model, outputs)
    if names:
        options.add_external_initializers(names, [ort.OrtValue.ortvalue_from_numpy(a) for a in arrays])
    return ort.InferenceSession(stub.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _without_large_weights(
    model: onnx.ModelProto, outputs: Sequence[str] | None = None
) -> tuple[onnx.ModelProto, list[str], list[np.ndarray]]:
    """A copy of `model` (with `outputs` as its outputs, if given) whose large raw initializers are
    external-data stubs; their names and values."""
    stub = onnx.ModelProto()
    _copy_fields(model, stub, skip="graph")
    _copy_fields(model.graph, stub.graph, skip="initializer")
    if outputs is not None:
        del stub.graph.output[:]
        stub.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in outputs)
    names, arrays = [], []
    read = names_read(stub.graph)  # onnxruntime drops an unread initializer before it would take the array
    for tensor in model.graph.initializer:
        raw = tensor.raw_data if tensor.data_location == onnx.TensorProto.DEFAULT else b""
        if len(raw) < IN_MEMORY or tensor.data_type not in NUMPY_NATIVE or tensor.name not in read:
            stub.graph.initializer.append(tensor)
            continue
        external = stub.graph.initializer.add(name=tensor.name, data_type=tensor.data_type, dims=tensor.dims)
        external.data_location = onnx.TensorProto.EXTERNAL
        external.external_data.add(key="location", value="in-memory")  # never opened: the array replaces it
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
        names.append(tensor.name)
        arrays.append(np.frombuffer(raw, dtype=dtype).reshape(tuple(tensor.dims)))
    return stub, names, arrays


def _copy_fields(source: Message, target: Message, skip: str) -> None:
    """Every set field of `source` but `skip` into the empty `target` (the skipped one is large)."""
    for field, value in source.ListFields():
        if field.name == skip:
            continue
        if _is_repeated(field):
            getattr(target, field.name).extend(value)
        elif field.type == field.TYPE_MESSAGE:
            getattr(target, field.name).CopyFrom(value)
        else:
            setattr(target, field.name, value)


def _is_repeated(field: Any) -> bool:
    """protobuf >= 6.32 deprecates `label` for `is_repeated`; older ones have only `label`."""
    if hasattr(field, "is_repeated"):
        return bool(field.is_repeated)
    return bool(field.label == field.LABEL_REPEATED)
