"""The detector graph's boxes: kept after a confidence threshold and class-aware NMS, and the ones explained.

As Ultralytics' `non_max_suppression` keeps them (one class per anchor, its best; boxes offset by
class x 7680 so that NMS never compares two classes), with ONNX's NonMaxSuppression, whose thresholds
and box count are constants (TensorRT's parser wants them so). The kept boxes go into fixed slots
[N, D], best first; `targets` column k then picks the k-th best kept box among its class (-1: any).
Only the explained boxes' anchors are looked up; nothing else is computed for the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import TensorProto

from realtime import contract
from realtime.export.detect.head import DetectHead
from realtime.export.graph.builder import GraphBuilder

MAX_WH = 7680.0  # Ultralytics' class offset for class-aware NMS (ultralytics/utils/nms.py)


@dataclass(frozen=True)
class Kept:
    """Tensor names of the kept boxes [N, D, ...] and of the explained ones [N, K]."""

    boxes: str  # [N,D,4] xyxy, zeros past the count
    scores: str  # [N,D]
    classes: str  # [N,D] int64, -1 past the count
    count: str  # [N] int64
    explained: str  # [N,K] int64: a slot, or -1
    present: str  # [N,K] float 1/0: a box is explained in that column
    anchor: str  # [N,K] int64: the explained box's anchor (0 where none)
    box_class: str  # [N,K] int64: its class (0 where none)
    images: str  # [N,K] int64: the image each column belongs to


def keep_and_pick(b: GraphBuilder, head: DetectHead, scores: str, conf: float, iou: float, slots: int) -> Kept:
    """The kept boxes, and the boxes `targets` asks to explain."""
    best = b.reduce("ReduceMax", scores, [1], keepdims=False)  # [N,A]
    best_class = b.op("ArgMax", [scores], axis=1, keepdims=0)  # [N,A] int64
    xyxy = _corners(b, head.boxes)  # [N,A,4]
    offset = b.unsqueeze(b.scale(b.cast(best_class), MAX_WH), [2])
    selected = b.op(
        "NonMaxSuppression",
        [b.op("Add", [xyxy, offset]), b.unsqueeze(best, [1]), b.const(np.array([slots], np.int64), "max_boxes"),
         b.const(np.array([iou], np.float32), "iou"), b.const(np.array([conf], np.float32), "conf")],
    )  # fmt: skip  # [S,3]: image, class (0), anchor; in an order the standard leaves open
    image_of = b.op("Gather", [selected, b.scalar(0)], axis=1)  # [S]
    anchor_of = b.op("Gather", [selected, b.scalar(2)], axis=1)
    n = b.slice(b.op("Shape", [best]), [0], [1], [0])  # [1]
    images = b.op("Range", [b.scalar(0), b.squeeze(n, [0]), b.scalar(1)])  # [N]
    one_hot = b.cast(b.op("Equal", [b.unsqueeze(image_of, [1]), b.unsqueeze(images, [0])]))  # [S,N] float
    rank = b.op("GatherElements", [b.op("CumSum", [one_hot, b.const(np.int64(0))]), b.unsqueeze(image_of, [1])],
                axis=1)  # fmt: skip  # [S,1]: 1 for an image's best box
    where = b.concat([b.unsqueeze(image_of, [1]), b.op("Sub", [b.cast(rank, TensorProto.INT64), b.ints([1])])], 1)
    empty = b.op("Expand", [b.const(np.int64(-1)), b.concat([n, b.ints([slots])])])
    in_nms_order = b.op("ScatterND", [empty, where, anchor_of])  # [N,D]: each slot's anchor, -1 when empty
    flat_scores = b.reshape(best, [-1])
    first = _at(b, in_nms_order, images, head.anchors)
    _, order = b.ops("TopK", [b.op("Mul", [b.op("Gather", [flat_scores, first[1]]), b.cast(first[0])]),
                              b.ints([slots])], 2, axis=1)  # fmt: skip  # best first, whatever NMS's order
    slot_anchor = b.op("GatherElements", [in_nms_order, order], axis=1)
    valid, flat = _at(b, slot_anchor, images, head.anchors)
    on = b.cast(valid)
    boxes = b.op("Mul", [b.op("Gather", [b.reshape(xyxy, [-1, 4]), flat]), b.unsqueeze(on, [2])])
    kept_scores = b.op("Mul", [b.op("Gather", [flat_scores, flat]), on])
    kept_classes = b.op("Where", [valid, b.op("Gather", [b.reshape(best_class, [-1]), flat]), b.const(np.int64(-1))])
    count = b.cast(b.reduce("ReduceSum", on, [1], keepdims=False), TensorProto.INT64)
    picked = _pick(b, valid, kept_classes)
    explained, present = picked
    safe = b.op("Max", [explained, b.const(np.int64(0))])
    anchor = b.op("Max", [b.op("GatherElements", [slot_anchor, safe], axis=1), b.const(np.int64(0))])
    box_class = b.op("Max", [b.op("GatherElements", [kept_classes, safe], axis=1), b.const(np.int64(0))])
    column_images = b.op("Expand", [b.unsqueeze(images, [1]), b.op("Shape", [contract.INPUT_TARGETS])])  # [N,K]
    return Kept(boxes, kept_scores, kept_classes, count, explained, present, anchor, box_class, column_images)


def _at(b: GraphBuilder, slot_anchor: str, images: str, anchors: int) -> tuple[str, str]:
    """Which slots hold a box [N,D] bool, and each slot's index into the flattened [N*A] anchors."""
    valid = b.op("GreaterOrEqual", [slot_anchor, b.const(np.int64(0))])
    flat = b.op("Add", [b.op("Max", [slot_anchor, b.const(np.int64(0))]),
                        b.op("Mul", [b.unsqueeze(images, [1]), b.const(np.int64(anchors))])])  # fmt: skip
    return valid, flat


def _corners(b: GraphBuilder, xywh: str) -> str:
    """[N,4,A] centre and size -> [N,A,4] x1, y1, x2, y2, as Ultralytics' xywh2xyxy computes them."""
    boxes = b.transpose(xywh, [0, 2, 1])
    centre, size = b.slice(boxes, [0], [2], [2]), b.slice(boxes, [2], [4], [2])
    half = b.op("Div", [size, b.const(np.float32(2.0))])
    return b.concat([b.op("Sub", [centre, half]), b.op("Add", [centre, half])], 2)


def _pick(b: GraphBuilder, valid: str, classes: str) -> tuple[str, str]:
    """For targets [N,K]: column k's slot is the k-th kept box whose class matches (any class for -1)."""
    targets = b.unsqueeze(contract.INPUT_TARGETS, [2])  # [N,K,1]
    kept = b.unsqueeze(classes, [1])  # [N,1,D]
    wanted = b.op("Or", [b.op("Less", [targets, b.const(np.int64(0))]), b.op("Equal", [kept, targets])])
    match = b.op("And", [wanted, b.unsqueeze(valid, [1])])  # [N,K,D]
    seen = b.op("CumSum", [b.cast(match), b.const(np.int64(2))])  # 1 for the first match
    k = b.squeeze(b.slice(b.op("Shape", [contract.INPUT_TARGETS]), [1], [2], [0]), [0])
    column = b.cast(b.reshape(b.op("Range", [b.scalar(1), b.op("Add", [k, b.scalar(1)]), b.scalar(1)]),
                              [1, -1, 1]))  # fmt: skip  # [1,K,1]: 1..K
    hit = b.cast(b.op("And", [match, b.op("Equal", [seen, column])]))
    slot = b.op("ArgMax", [hit], axis=2, keepdims=0)  # [N,K]
    present = b.reduce("ReduceMax", hit, [2], keepdims=False)
    explained = b.op("Where", [b.op("Greater", [present, b.const(np.float32(0.5))]), slot, b.const(np.int64(-1))])
    return explained, present
