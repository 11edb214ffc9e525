"""Static int8 (QDQ) quantization of a Grad-CAM graph's forward path, and its fidelity check.

Three scopes: the convolutions, their ReLUs and pools (`convs`); also the
forward Dense layers (`forward`); also the backward's Dense products (`all`),
whose weights become int8 and whose gradient vectors are quantized per call.
The channel weights and the map arithmetic always stay fp32 and the contract is
unchanged; the exporter records `gradcam.precision = int8 (<scope>)`.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx

from realtime import contract
from realtime.engines import int8_cpu
from realtime.export.graph.index import attrs, drop_unused_initializers, producers
from realtime.export.ops import record
from realtime.quiet import quiet_logging

SCOPES = {
    "convs": "convolutions, ReLUs and pools only; every Dense layer stays fp32",
    "forward": "also the forward Dense layers (int8 weights); the backward stays fp32",
    "all": "also the backward's Dense products (int8 weights, gradients quantized per call)",
}
DEFAULT_SCOPE = "all"
MIN_BACKWARD_BYTES = 64 * 2**10  # smaller backward weights stay fp32: nothing to gain


class QuantizeError(RuntimeError):
    """Quantization cannot go on; the message says what to do."""


def forward_nodes(model: onnx.ModelProto, scope: str) -> list[str]:
    """Names of the nodes to quantize: never the backward, the weights or the map arithmetic.

    Which op types quantize is the op table's `int8` field: convolutions, their pools and their
    ReLUs (`conv`, `pool`, `relu`), and with scope forward or all the forward Dense layers (`dense`).
    """
    if scope not in SCOPES:
        raise QuantizeError(f"unknown scope {scope!r}; choose {', '.join(SCOPES)}")
    inits = {init.name for init in model.graph.initializer}
    producer = producers(model.graph.node)
    shapes = {init.name: tuple(init.dims) for init in model.graph.initializer}
    names = []
    for node in model.graph.node:
        role = record(node.op_type).int8
        if role == "conv" and shapes.get(node.input[1], (0, 0))[1] <= 4:
            continue  # the RGB conv: int8 kernels gain nothing on 3 input channels (3.1 against 1.4 ms fp32)
        if role in ("conv", "pool", "relu") and node.input[0] not in inits:
            parent = producer.get(node.input[0])
            if role == "relu" and (parent is None or record(parent.op_type).int8 != "conv"):
                continue  # head ReLUs sit between fp32 dense layers
            names.append(node.name)
        # forward Dense: MatMul(x, W) or Gemm(x, W, transB=1). The backward's Gemm reads its weight first.
        elif scope != "convs" and role == "dense" and node.input[1] in inits and node.input[0] not in inits:
            names.append(node.name)
    return names


SHARED_COPY_LIMIT = 128 * 2**20  # bytes: a larger shared weight keeps its forward Dense in fp32


def split_shared_weights(model: onnx.ModelProto, nodes: list[str]) -> int:
    """Give each forward Dense its own copy of a weight the backward also reads (scope `forward`;
    with `all` the backward has its own int8 weights by then and shares nothing).

    Otherwise the quantizer swaps the shared fp32 weight for int8 plus a DequantizeLinear
    that the backward then runs on every frame (38 ms for VGG16's fc2). The forward copy
    becomes int8, a quarter of the size; the backward keeps the fp32 original. A weight
    over SHARED_COPY_LIMIT (fc1 of a `full` graph, 411 MB) is not copied: quantizing
    around that copy took VGG16's export past 6 GB, so that one Dense stays fp32 and is
    dropped from `nodes`.
    """
    inits = {init.name: init for init in model.graph.initializer}
    readers = Counter(name for node in model.graph.node for name in node.input)
    selected = set(nodes)
    copies = 0
    for node in model.graph.node:
        if node.name in selected and record(node.op_type).int8 == "dense" and readers[node.input[1]] > 1:
            original = inits[node.input[1]]
            if len(original.raw_data) > SHARED_COPY_LIMIT:
                nodes.remove(node.name)
                continue
            copy = onnx.TensorProto()
            copy.CopyFrom(original)
            copy.name = f"{original.name}_forward"
            model.graph.initializer.append(copy)
            node.input[1] = copy.name
            copies += 1
    return copies


def _backward_product(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto], min_bytes: int) -> bool:
    """Is `node` the backward's Gemm(W, g^T): a constant 2-D float weight first, the gradient second?"""
    a = attrs(node)
    weight = inits.get(node.input[0]) if node.op_type == "Gemm" and len(node.input) == 2 else None
    return (
        weight is not None
        and node.input[1] not in inits
        and a.get("transB", 0) == 0
        and a.get("alpha", 1.0) == 1.0
        and weight.data_type == onnx.TensorProto.FLOAT
        and len(weight.dims) == 2
        and int(np.prod(weight.dims)) * 4 >= min_bytes
    )


def quantize_backward_products(
    model: onnx.ModelProto, min_bytes: int = MIN_BACKWARD_BYTES, target: str | None = None
) -> int:
    """Replace the backward's Gemm(W, g^T, transA) by DynamicQuantizeMatMul(g, int8 weights), transposed back.

    The backward reads every Dense weight once more per frame; as int8 that is a quarter of the
    bytes (VGG16's fc2: 2.4 ms fp32, 0.4 ms int8). Weights are 8-bit per output column; g is
    quantized per call by onnxruntime, so no range has to be calibrated for gradients, whose
    scale changes with the class. For `no-vnni` CPUs the same symmetric weights are stored as
    uint8 around a zero point of 128: onnxruntime then runs u8u8 kernels, which widen before
    adding and so never saturate (a product off by 3.6% with s8 weights, 1% with these, on a
    Zen 3). Returns how many products were replaced.
    """
    from onnx import numpy_helper

    target = target or int8_cpu.detect().target
    inits = {init.name: init for init in model.graph.initializer}
    replaced = 0
    for node in list(model.graph.node):
        if not _backward_product(node, inits, min_bytes):
            continue
        weight = numpy_helper.to_array(inits[node.input[0]])
        # y^T = op(W) @ g^T, so y = g @ op(W)^T: the int8 matrix is op(W)^T, [out, in]
        matrix = weight if attrs(node).get("transA", 0) else weight.T
        scale = np.abs(matrix).max(axis=0) / 127.0
        scale[scale == 0] = 1.0
        quantized = np.empty(matrix.shape, np.int8)
        for start in range(0, matrix.shape[0], 4096):  # in row blocks to bound the memory
            rows = matrix[start : start + 4096] / scale[None, :]
            quantized[start : start + 4096] = np.clip(np.rint(rows), -127, 127).astype(np.int8)
        base = f"{node.input[0]}_int8"
        stored: np.ndarray = quantized
        zero: np.ndarray = np.zeros(len(scale), np.int8)
        if target == int8_cpu.NO_VNNI:  # the same values, shifted into uint8: exact, since -127..127 + 128 fits
            stored, zero = (quantized.astype(np.int16) + 128).astype(np.uint8), np.full(len(scale), 128, np.uint8)
        model.graph.initializer.extend(
            [
                numpy_helper.from_array(stored, base),
                numpy_helper.from_array(scale.astype(np.float32), f"{base}_scale"),
                numpy_helper.from_array(zero, f"{base}_zero"),
            ]
        )
        gradient, output = node.input[1], node.output[0]
        index = list(model.graph.node).index(node)
        model.graph.node.remove(node)
        replacement = [
            onnx.helper.make_node("Transpose", [gradient], [f"{output}_g"], name=f"{node.name}_g", perm=[1, 0]),
            onnx.helper.make_node(
                "DynamicQuantizeMatMul",
                [f"{output}_g", base, f"{base}_scale", f"{base}_zero"],
                [f"{output}_t"],
                name=f"{node.name}_int8",
                domain="com.microsoft",
            ),
            onnx.helper.make_node("Transpose", [f"{output}_t"], [output], name=f"{node.name}_back", perm=[1, 0]),
        ]
        for offset, new in enumerate(replacement):  # in place: the graph keeps its order
            model.graph.node.insert(index + offset, new)
        replaced += 1
    if replaced:
        drop_unused_initializers(model)
        if not any(op.domain == "com.microsoft" for op in model.opset_import):
            model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    return replaced


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over an array of images."""

    def __init__(self, images: np.ndarray) -> None:
        self._it: Iterator[dict[str, np.ndarray]] = (
            {contract.INPUT_IMAGE: img[None], contract.INPUT_TARGETS: np.full((1, 1), -1, np.int64)} for img in images
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def quantize(
    fp32_path: Path, output: Path, images: np.ndarray, scope: str = DEFAULT_SCOPE, target: str | None = None,
    verbose: bool = False,
) -> Path:  # fmt: skip
    """Write the int8 QDQ version of `fp32_path` to `output`, calibrated on `images`, for CPUs of `target`
    (vnni or no-vnni; None: this CPU's).

    The target changes only the backward's products (see quantize_backward_products): the forward's
    convolutions stay u8s8 with 8-bit weights for both. On a Zen 3 without VNNI (VGG16, random
    weights, 30 demo scenes) the map correlation with fp32 was 0.960 with s8 backward products and
    0.996 with u8 ones; 7-bit convolution weights (reduce_range) gave 0.995 and u8u8 convolutions
    0.996 at 1.45x the time, so neither is used (docs/benchmarks.md, "Every CPU").
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    target = target or int8_cpu.detect().target
    model = onnx.load(str(fp32_path))
    products = 0
    if scope == "all":  # first: then no forward weight is shared with the backward, nothing needs copying
        products = quantize_backward_products(model, target=target)
    nodes = forward_nodes(model, scope)
    metadata = {p.key: p.value for p in model.metadata_props}
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        split_shared_weights(model, nodes)
        onnx.save_model(model, str(prepared))
        del model
        quantized = Path(tmp) / "int8.onnx"
        with quiet_logging(enabled=not verbose):  # its advice to pre-process: the shapes here are inferred already
            quantize_static(
                str(prepared),
                str(quantized),
                _Reader(images),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_quantize=nodes,
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
            )
        model = onnx.load(str(quantized))
    del model.metadata_props[:]
    written = {
        contract.META_PRECISION: f"int8 ({scope})",
        contract.META_INT8_TARGET: target if products else int8_cpu.ANY,  # without backward products both forms agree
        contract.META_INT8_CPU: int8_cpu.detect().describe(),
    }
    for key, value in {**metadata, **written}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    from realtime.export.graph.writing import save_checked

    save_checked(model, output, _loads)  # a killed quantization never replaces a good model
    return output


def _loads(path: Path) -> None:
    """The int8 graph opens in onnxruntime and keeps the contract."""
    from realtime.engines.local import LocalEngine
    from realtime.engines.providers import EngineOptions

    LocalEngine(path, EngineOptions(providers="cpu", warmup=0))
