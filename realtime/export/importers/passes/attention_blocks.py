"""Where torch's nn.MultiheadAttention runs sequence-first: the blocks, and what rebuilding each needs.

A block runs from a [1, 0, 2] Transpose into one packed projection ([C, 3C]) to a [1, 0, 2] Transpose
out of the output projection. It is found by walking the activations back from that exit; every
arithmetic node on the way must have a role in self-attention (the projections and their biases, the
two products of activations, one Softmax, scalar scales on q, k or the scores, one constant mask added
to the scores), so a second projection, a padding mask computed from an input or anything else leaves
the block unmatched, and the backward refuses it in one line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from realtime.export.graph.index import GraphIndex, InitializerValues, attrs, perm
from realtime.export.importers.passes.onnx_normalize import shape_only_tensors
from realtime.export.ops import record

SWAP = [1, 0, 2]  # [N, T, C] <-> [T, N, C]


@dataclass(frozen=True)
class Block:
    """One sequence-first attention block, as found: what the rebuilt one needs from it."""

    x: str  # its batch-first input [N, T, C] (before the entry Transpose)
    exit: str  # its batch-first output [N, T, C] (the exit Transpose's output)
    width: int  # C
    in_weight: str  # the packed projection's [C, 3C] weight (MatMul's second input)
    in_bias: str | None
    out_proj: onnx.NodeProto  # the output projection (Gemm x W^T + b, or MatMul with a [C, C] weight)
    out_weight: np.ndarray
    out_bias: str | None  # an Add after a MatMul projection
    scores: str  # the Softmax's input: its shape at batch 1 gives the heads
    multipliers: tuple[tuple[str, bool], ...]  # scalars on q, k or the scores; True: divides
    mask: str | None = None  # a constant added to the scores (attn_mask, as torch makes it a float [T, T])


def find_blocks(model: onnx.ModelProto) -> list[Block]:
    """The blocks between a [1, 0, 2] Transpose into a packed projection and one out of the projection."""
    graph = model.graph
    index = GraphIndex.of(graph)
    shape_only = set(shape_only_tensors(model))
    inits = InitializerValues(graph)
    found = []
    for node in graph.node:
        if node.op_type == "Transpose" and perm(node) == SWAP:
            block = _block_ending_at(node, index, shape_only, inits)
            if block is not None:
                found.append(block)
    return found


def _data_inputs(node: onnx.NodeProto, index: GraphIndex, shape_only: set[str]) -> list[str]:
    """The inputs that carry activations: not constants, not shape arithmetic (reshape targets, scales)."""
    if record(node.op_type).attention in ("moves", "projects", "normalises"):
        return [node.input[0]]
    return [i for i in node.input if i and i not in index.constants and i not in shape_only]


def _block_ending_at(
    exit_node: onnx.NodeProto, index: GraphIndex, shape_only: set[str], inits: InitializerValues
) -> Block | None:
    """Walk the activations back from the exit Transpose to the packed projection; None unless the walk
    finds exactly the ops of one self-attention (no masks, no other arithmetic)."""
    region: list[onnx.NodeProto] = []
    seen: set[str] = set()
    queue = [exit_node.input[0]]
    in_proj: onnx.NodeProto | None = None
    while queue:
        name = queue.pop()
        node = index.producer.get(name)
        if node is None or not record(node.op_type).attention:
            return None
        if node.name in seen:
            continue
        seen.add(node.name)
        region.append(node)
        if _is_packed_projection(node, index, inits):
            in_proj = node
            continue
        queue.extend(_data_inputs(node, index, shape_only))
    if in_proj is None:
        return None
    entry = index.producer.get(in_proj.input[0])
    if entry is None or entry.op_type != "Transpose" or perm(entry) != SWAP:
        return None
    return _classify(region, exit_node, entry, in_proj, index, shape_only, inits)


def _is_packed_projection(node: onnx.NodeProto, index: GraphIndex, inits: InitializerValues) -> bool:
    weight = _constant(node.input[1], index, inits) if node.op_type == "MatMul" else None
    return weight is not None and weight.ndim == 2 and weight.shape[1] == 3 * weight.shape[0]


def _constant(name: str, index: GraphIndex, inits: InitializerValues) -> np.ndarray | None:
    """An initializer's value, also through Identity copies (torch's exporter ties equal weights so)."""
    while name not in inits:
        node = index.producer.get(name)
        if node is None or node.op_type != "Identity":
            return None
        name = node.input[0]
    return inits[name]


def _classify(
    region: list[onnx.NodeProto],
    exit_node: onnx.NodeProto,
    entry: onnx.NodeProto,
    in_proj: onnx.NodeProto,
    index: GraphIndex,
    shape_only: set[str],
    inits: InitializerValues,
) -> Block | None:
    """Name each arithmetic node's role; None when one has none (a mask's Add, a second projection)."""
    packed = _constant(in_proj.input[1], index, inits)
    assert packed is not None  # a packed projection has a constant weight
    width = int(packed.shape[0])
    products = [n for n in region if n.op_type == "MatMul" and n is not in_proj]
    pairs = [n for n in products if all(i not in index.constants for i in n.input)]
    softmax = [n for n in region if n.op_type == "Softmax"]
    projections = [n for n in region if n.op_type == "Gemm" or (n in products and n not in pairs)]
    if len(pairs) != 2 or len(softmax) != 1 or len(projections) != 1:
        return None
    if int(attrs(softmax[0]).get("axis", -1)) != -1:
        return None
    out_proj = projections[0]
    weight = _constant(out_proj.input[1], index, inits)
    if weight is None or weight.shape != (width, width) or not _plain_gemm(out_proj):
        return None
    in_bias = out_bias = mask = None
    multipliers = []
    before_softmax = index.ancestors(softmax[0].input[0])  # q's, k's and the scores' tensors, not v's
    for node in region:
        if node.op_type == "Add":
            bias = next((i for i in node.input if i in index.constants), None)
            value = None if bias is None else _constant(bias, index, inits)
            source = index.producer.get(next((i for i in node.input if i != bias), ""))
            if bias is not None and mask is None and node.output[0] in before_softmax and source in pairs:
                mask = bias  # its value (computed from constants, perhaps) is read by running the file
            elif value is None:
                return None
            elif source is in_proj and value.shape == (3 * width,):
                in_bias = bias
            elif source is out_proj and out_proj.op_type == "MatMul" and value.shape == (width,):
                out_bias = bias
            else:
                return None
        elif record(node.op_type).attention == "scales":
            scalar = [i for i in node.input if i in index.constants or i in shape_only]
            if len(scalar) != 1 or (node.op_type == "Div" and node.input[1] != scalar[0]):
                return None
            if node.output[0] not in before_softmax:
                return None  # a scale on v or on the output is not a score scale
            multipliers.append((scalar[0], node.op_type == "Div"))
    if not _only_read_inside(region, exit_node, index, shape_only):
        return None
    return Block(entry.input[0], exit_node.output[0], width, in_proj.input[1], in_bias, out_proj, weight,
                 out_bias, softmax[0].input[0], tuple(multipliers), mask)  # fmt: skip


def _plain_gemm(node: onnx.NodeProto) -> bool:
    """A MatMul, or a Gemm that is x W^T (+ b): the rebuilt projection is a MatMul with W^T."""
    if node.op_type == "MatMul":
        return True
    given = attrs(node)
    plain = given.get("alpha", 1.0) == 1.0 and given.get("beta", 1.0) == 1.0
    return plain and given.get("transA", 0) == 0 and given.get("transB", 0) == 1


def _only_read_inside(
    region: list[onnx.NodeProto], exit_node: onnx.NodeProto, index: GraphIndex, shape_only: set[str]
) -> bool:
    """No tensor of the block is read outside it, except by shape arithmetic (which dies with it)."""
    names = {n.name for n in region} | {exit_node.name}
    for node in region:
        for out in node.output:
            for reader in index.consumers.get(out, ()):
                if reader.name not in names and not all(o in shape_only for o in reader.output):
                    return False
    return True
