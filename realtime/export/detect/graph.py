"""A detector's forward graph -> its Grad-CAM graph (contract.detector), in memory.

In: the model's own float input and its one output [N, 4 + C, A]. Out: `image` (uint8 BGR, letterboxed
by the runtime) and `targets` in; the kept boxes, the explained ones, and per level each explained box's
gradient window, Grad-CAM weights and map, LayerCAM map, and one map fused over the levels.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto

from realtime import contract
from realtime.export.contract_graph import channels_last, free_names, normalised_cam, prepend_preprocessing, value_info
from realtime.export.detect.boxes import Kept, keep_and_pick
from realtime.export.detect.head import DetectHead, Level, find_head
from realtime.export.detect.windows import Cells, Window, embed, window
from realtime.export.graph.builder import GraphBuilder
from realtime.export.graph.layout import NCHW
from realtime.export.graph.shapes import static_shapes
from realtime.export.preprocessing import Preprocess

NAMES = frozenset(
    (contract.INPUT_IMAGE, contract.INPUT_TARGETS, *contract.DETECTOR_OUTPUTS,
     *(contract.layer_output(o, i) for o in contract.LEVEL_OUTPUTS for i in range(8)))
)  # fmt: skip


@dataclass(frozen=True)
class Settings:
    """What an export fixes in the graph: NMS's thresholds and box count, and the metadata."""

    conf: float
    iou: float
    max_boxes: int
    preprocess: Preprocess
    metadata: Mapping[str, str]


def build(model: onnx.ModelProto, input_name: str, settings: Settings) -> DetectHead:
    """Rewrite `model` (a detector's forward graph, NCHW float input) in place into the detector contract
    graph (nodes appended; sort them afterwards). DetectorError when its head is not one this knows."""
    graph = model.graph
    b = GraphBuilder(model)
    input_name = free_names(b, {name for node in graph.node for name in node.output} | {input_name}, NAMES).get(
        input_name, input_name
    )
    dims = [d.dim_value for d in next(v for v in graph.input if v.name == input_name).type.tensor_type.shape.dim]
    head = find_head(model, static_shapes(model), (dims[2], dims[3]))
    del graph.input[:], graph.output[:], graph.value_info[:]
    graph.input.extend([
        value_info(contract.INPUT_IMAGE, TensorProto.UINT8, [contract.DIM_BATCH, dims[2], dims[3], 3]),
        value_info(contract.INPUT_TARGETS, TensorProto.INT64, [contract.DIM_BATCH, contract.DIM_TARGETS]),
    ])  # fmt: skip
    prepend_preprocessing(b, input_name, NCHW, settings.preprocess)
    scores = next(n for n in graph.node if n.output and n.output[0] == _scores_of(graph, head)).output[0]
    kept = keep_and_pick(b, head, scores, settings.conf, settings.iou, settings.max_boxes)
    outputs = _box_outputs(b, kept, settings.max_boxes)
    windows, layercams, where = [], [], []
    classes = b.reshape(kept.box_class, [-1, 1])
    for i, level in enumerate(head.levels):
        cells = _cells(b, level, kept, i)
        where.append(cells)
        shapes = _branch_shapes(model, level)
        found = window(b, level, cells, classes, head.num_classes, shapes)
        windows.append(found)
        level_outputs, layercam = _level_outputs(b, level, cells, found, i)
        outputs += level_outputs
        layercams.append(layercam)
    outputs.append(_fused(b, head.levels, layercams))
    outputs.append(_anchors(b, where, kept))
    outputs.append(_box_logits(b, windows, where, classes))
    graph.output.extend(outputs)
    del model.metadata_props[:]
    for key, value in {**settings.metadata, contract.META_LAYERS: json.dumps(_level_names(head)),
                       contract.META_STRIDES: json.dumps([lv.stride for lv in head.levels])}.items():  # fmt: skip
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return head


def _level_names(head: DetectHead) -> list[str]:
    return [f"P{int(np.log2(level.stride))}/{level.stride}" for level in head.levels]


def _scores_of(graph: onnx.GraphProto, head: DetectHead) -> str:
    """The Sigmoid's output that the head's output concatenates."""
    return next(n.output[0] for n in graph.node if n.op_type == "Sigmoid" and n.input[0] == head.logits)


def _branch_shapes(model: onnx.ModelProto, level: Level) -> dict[str, tuple[int, ...]]:
    """The channels of each class-branch output (the window copy's shapes take the window's size)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for node in level.branch:
        weight = next((i for i in model.graph.initializer if node.op_type == "Conv" and i.name == node.input[1]), None)
        shapes[node.output[0]] = (int(weight.dims[0]),) if weight is not None else ()
    channels = level.channels
    for node in level.branch:  # element-wise ops keep their input's channels
        if not shapes[node.output[0]]:
            shapes[node.output[0]] = (channels,)
        channels = shapes[node.output[0]][0]
    return shapes


def _cells(b: GraphBuilder, level: Level, kept: Kept, index: int) -> Cells:
    """Each explained box's cell on `level`, and whether its anchor is on it."""
    local = b.reshape(b.op("Sub", [kept.anchor, b.const(np.int64(level.offset))]), [-1])  # [M]
    cells = level.height * level.width
    on_level = b.op("And", [b.op("GreaterOrEqual", [local, b.const(np.int64(0))]),
                            b.op("Less", [local, b.const(np.int64(cells))])])  # fmt: skip
    on = b.op("Mul", [b.cast(on_level), b.reshape(kept.present, [-1])])
    clamped = b.op("Min", [b.op("Max", [local, b.const(np.int64(0))]), b.const(np.int64(cells - 1))])
    rows = b.op("Div", [clamped, b.const(np.int64(level.width))])
    columns = b.op("Sub", [clamped, b.op("Mul", [rows, b.const(np.int64(level.width))])])
    return Cells(b.reshape(kept.images, [-1]), rows, columns, b.reshape(on, [-1, 1, 1, 1]))


def _box_logits(
    b: GraphBuilder, windows: Sequence[Window], where: Sequence[Cells], classes: str
) -> onnx.ValueInfoProto:
    """[N,K]: each explained box's class logit, as its level's window recomputes it (zero where none): the
    graph's own logit at that anchor, which the self-check holds it against."""
    total = None
    for found, cells in zip(windows, where, strict=True):
        picked = b.op("GatherElements", [found.logits, classes], axis=1)  # [M,1]
        own = b.op("Mul", [picked, b.reshape(cells.on, [-1, 1])])
        total = own if total is None else b.op("Add", [total, own])
    assert total is not None
    b.named("Reshape", [total, b.op("Shape", [contract.INPUT_TARGETS])], contract.OUT_BOX_LOGITS)
    return value_info(contract.OUT_BOX_LOGITS, TensorProto.FLOAT, ["N", "K"])


def _anchors(b: GraphBuilder, where: Sequence[Cells], kept: Kept) -> onnx.ValueInfoProto:
    """[N,K,3] int64: each explained box's level, row and column (-1 where no box is explained)."""
    total = None
    for i, cells in enumerate(where):
        on = b.cast(b.reshape(cells.on, [-1, 1]), TensorProto.INT64)
        cell = b.concat([b.op("Mul", [on, b.const(np.int64(i))]), b.op("Mul", [on, b.unsqueeze(cells.rows, [1])]),
                         b.op("Mul", [on, b.unsqueeze(cells.columns, [1])])], 1)  # fmt: skip  # [M,3]
        total = cell if total is None else b.op("Add", [total, cell])
    assert total is not None
    present = b.op("Greater", [b.reshape(kept.present, [-1, 1]), b.const(np.float32(0.5))])
    cells_or_none = b.op("Where", [present, total, b.const(np.int64(-1))])
    shape = b.concat([b.op("Shape", [contract.INPUT_TARGETS]), b.ints([3])])
    b.named("Reshape", [cells_or_none, shape], contract.OUT_ANCHORS)
    return value_info(contract.OUT_ANCHORS, TensorProto.INT64, ["N", "K", 3])


def _box_outputs(b: GraphBuilder, kept: Kept, slots: int) -> list[onnx.ValueInfoProto]:
    named: tuple[tuple[str, str, int, list[int | str]], ...] = (
        (contract.OUT_BOXES, kept.boxes, TensorProto.FLOAT, ["N", slots, 4]),
        (contract.OUT_SCORES, kept.scores, TensorProto.FLOAT, ["N", slots]),
        (contract.OUT_BOX_CLASSES, kept.classes, TensorProto.INT64, ["N", slots]),
        (contract.OUT_COUNT, kept.count, TensorProto.INT64, ["N"]),
        (contract.OUT_EXPLAINED, kept.explained, TensorProto.INT64, ["N", "K"]),
    )
    for name, tensor, _, _ in named:
        b.named("Identity", [tensor], name)
    return [value_info(name, elem, dims) for name, _, elem, dims in named]


def _level_outputs(
    b: GraphBuilder, level: Level, cells: Cells, found: Window, index: int
) -> tuple[list[onnx.ValueInfoProto], str]:
    """activations, weights, cam, layercam and the gradient window of one level, under its names."""
    h, w, c, s = level.height, level.width, level.channels, level.window
    name = lambda output: contract.layer_output(output, index)  # noqa: E731
    shape_nk = b.op("Shape", [contract.INPUT_TARGETS])
    channels_last(b, level.input, name(contract.OUT_ACTIVATIONS), True, rank=4)
    window_last = b.transpose(found.gradients, [0, 2, 3, 1])  # [M,s,s,c]
    b.named("Reshape", [window_last, b.concat([shape_nk, b.ints([s, s, c])])], name(contract.OUT_GRADIENTS))
    total = b.reduce("ReduceSum", found.gradients, [2, 3], keepdims=False)  # [M,c]
    weights = b.op("Reshape", [b.scale(total, 1.0 / (h * w)), b.concat([shape_nk, b.ints([c])])])
    b.named("Identity", [weights], name(contract.OUT_WEIGHTS))
    normalised_cam(b, level.input, weights, (h, w, c), name(contract.OUT_CAM))
    evidence = b.op("Mul", [b.op("Relu", [found.gradients]), found.patch])
    layercam = b.op("Relu", [b.reduce("ReduceSum", evidence, [1], keepdims=False)])  # [M,s,s]
    full = b.op("Reshape", [embed(b, level, cells, layercam), b.concat([shape_nk, b.ints([h, w])])])
    b.named("Identity", [full], name(contract.OUT_LAYERCAM))
    outputs = [
        value_info(name(contract.OUT_ACTIVATIONS), TensorProto.FLOAT, ["N", h, w, c]),
        value_info(name(contract.OUT_WEIGHTS), TensorProto.FLOAT, ["N", "K", c]),
        value_info(name(contract.OUT_CAM), TensorProto.FLOAT, ["N", "K", h, w]),
        value_info(name(contract.OUT_LAYERCAM), TensorProto.FLOAT, ["N", "K", h, w]),
        value_info(name(contract.OUT_GRADIENTS), TensorProto.FLOAT, ["N", "K", s, s, c]),
    ]
    return outputs, full


def _fused(b: GraphBuilder, levels: Sequence[Level], layercams: Sequence[str]) -> onnx.ValueInfoProto:
    """Each level's LayerCAM over its max, on the finest level's grid (bilinear, as torch's interpolate with
    align_corners=False), and their element-wise max."""
    h0, w0 = levels[0].height, levels[0].width
    fused = None
    for level, layercam in zip(levels, layercams, strict=True):
        peak = b.op("Max", [b.reduce("ReduceMax", layercam, [2, 3]), b.const(np.float32(1e-7), "eps")])
        scaled = b.op("Div", [layercam, peak])
        if (level.height, level.width) != (h0, w0):
            sizes = b.concat([b.slice(b.op("Shape", [scaled]), [0], [2], [0]), b.ints([h0, w0])])
            scaled = b.op("Resize", [scaled, "", "", sizes], mode="linear",
                          coordinate_transformation_mode="half_pixel")  # fmt: skip
        fused = scaled if fused is None else b.op("Max", [fused, scaled])
    assert fused is not None
    b.named("Identity", [fused], contract.OUT_MAP)
    return value_info(contract.OUT_MAP, TensorProto.FLOAT, ["N", "K", h0, w0])
