"""torch's nn.MultiheadAttention, written sequence-first, rebuilt with the batch first.

torchvision's ViT (and any model built on nn.MultiheadAttention) runs its attention on [T, N, C]: the
input transposed, the batch folded into the heads ([T, N*heads, d]) and back, then transposed again.
The backward keeps the batch as every tensor's first axis, so each such block is rebuilt as timm
writes its attention: the packed projection on [N, T, C], q, k and v picked per head with the batch
first, softmax(q k^T * scale) v, the heads merged and the output projected. The heads and the scale
are read by running the file once; a rebuilt block must give the original's values on a random
image, or the file keeps its own block (and the backward then refuses it in one line). A constant mask
(`attn_mask`, which torch turns into a float [T, T] of 0 and -inf) is added to the scores as the file does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from realtime.export.graph.index import InitializerValues, drop_unused_initializers
from realtime.export.graph.passes import drop_dead, topological_sort
from realtime.export.graph.session import cpu_session
from realtime.export.importers.passes.attention_blocks import Block, find_blocks


def batch_first_attention(model: onnx.ModelProto, input_name: str, input_dims: Sequence[int]) -> int:
    """Rebuild every sequence-first attention block batch-first; returns how many were rebuilt."""
    blocks = find_blocks(model)
    if not blocks:
        return 0
    image = np.random.default_rng(3).standard_normal((1, *input_dims)).astype(np.float32)
    inits = InitializerValues(model.graph)
    read = {b.scores for b in blocks} | {name for b in blocks for name, _ in b.multipliers}
    read |= {b.mask for b in blocks if b.mask is not None}
    values = {name: inits[name] for name in read if name in inits}
    values.update(_run(model, input_name, image, sorted(read - set(values))))
    rebuilt = {b.exit: _rebuild(model, b, values) for b in blocks}
    built = {exit: new for exit, new in rebuilt.items() if new is not None}
    got = _run(model, input_name, image, [name for pair in built.items() for name in pair]) if built else {}
    same = {exit: new for exit, new in built.items() if exit in got and _close(got[exit], got[new])}
    _swap_in(model, built, same)
    return len(same)


def _run(model: onnx.ModelProto, input_name: str, image: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """The named tensors for one image; none where the file does not run (the import's probe says why)."""
    try:
        session = cpu_session(model, outputs=names)
        return dict(zip(names, session.run(names, {input_name: image}), strict=True))
    except Exception:  # onnxruntime's own error types
        return {}


def _swap_in(model: onnx.ModelProto, built: dict[str, str], same: dict[str, str]) -> None:
    """The rebuilt blocks that agree take over their exits' names; the old blocks and the others go."""
    graph = model.graph
    kept = [o for o in graph.output if o.name not in built.values()]  # the rebuilt outputs were only compared
    del graph.output[:]
    graph.output.extend(kept)
    for node in list(graph.node):
        if node.output and node.output[0] in same:
            graph.node.remove(node)  # the old block's exit: its output is now made by the rebuilt block
    by_new = {new: exit for exit, new in same.items()}
    for node in graph.node:
        if node.output and node.output[0] in by_new:
            node.output[0] = by_new[node.output[0]]
    topological_sort(model)
    drop_dead(model)  # the old blocks, and rebuilt ones that did not agree
    drop_unused_initializers(model)


def _rebuild(model: onnx.ModelProto, block: Block, values: dict[str, np.ndarray]) -> str | None:
    """The block batch-first, beside the old one (which stays until the values agree); its output name."""
    if block.scores not in values or any(name not in values for name, _ in block.multipliers):
        return None  # the file did not run
    if block.mask is not None and block.mask not in values:
        return None
    scores = values[block.scores]
    if scores.ndim < 3:
        return None  # not [heads, T, T] scores
    heads = int(np.prod(scores.shape[:-2]))  # at batch 1: [heads, T, T] or [1, heads, T, T]
    width = block.width
    scale = 1.0
    for name, divides in block.multipliers:
        value = np.asarray(values[name], np.float64)
        if value.size != 1 or (divides and float(value.reshape(())) == 0.0):
            return None
        scale = scale / float(value.reshape(())) if divides else scale * float(value.reshape(()))
    if heads < 1 or width % heads or scores.shape[-1] != scores.shape[-2]:
        return None
    tokens = scores.shape[-1]
    if block.mask is not None and np.asarray(values[block.mask]).size != tokens * tokens:
        return None  # a mask per head or per image: not one [T, T] for every image
    graph, stem = model.graph, f"{block.exit}/batch_first"
    nodes: list[onnx.NodeProto] = []

    def const(name: str, value: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(value, f"{stem}/{name}/value"))
        return f"{stem}/{name}/value"

    def op(kind: str, inputs: list[str], name: str, **attributes: Any) -> str:
        nodes.append(onnx.helper.make_node(kind, inputs, [f"{stem}/{name}"], name=f"{stem}/{name}", **attributes))
        return f"{stem}/{name}"

    packed = op("MatMul", [block.x, block.in_weight], "packed")
    if block.in_bias is not None:
        packed = op("Add", [packed, block.in_bias], "packed_bias")
    split = op("Reshape", [packed, const("split", np.array([0, 0, 3, heads, width // heads], np.int64))], "split")
    q, k, v = (op("Transpose", [op("Gather", [split, const(f"{role}_at", np.array(i, np.int64))], role, axis=2)],
                  f"{role}_heads", perm=[0, 2, 1, 3]) for i, role in enumerate("qkv"))  # fmt: skip
    scaled = op("Mul", [q, const("scale", np.array(scale, np.float32))], "q_scaled")
    keys = op("Transpose", [k], "k_t", perm=[0, 1, 3, 2])
    scores_made = op("MatMul", [scaled, keys], "scores")
    if block.mask is not None:  # [T, T], the same for every image and head
        mask = np.asarray(values[block.mask], np.float32).reshape(tokens, tokens)
        scores_made = op("Add", [scores_made, const("mask", mask)], "masked")
    weights = op("Softmax", [scores_made], "attention", axis=-1)
    mixed = op("Transpose", [op("MatMul", [weights, v], "mixed")], "tokens_first", perm=[0, 2, 1, 3])
    merged = op("Reshape", [mixed, const("merge", np.array([0, 0, width], np.int64))], "merged")
    proj = block.out_proj
    if proj.op_type == "Gemm":
        out = op("MatMul", [merged, const("out_weight", np.ascontiguousarray(block.out_weight.T))], "out")
        if len(proj.input) > 2 and proj.input[2]:
            out = op("Add", [out, proj.input[2]], "out_bias")
    else:
        out = op("MatMul", [merged, proj.input[1]], "out")
        if block.out_bias is not None:
            out = op("Add", [out, block.out_bias], "out_bias")
    graph.node.extend(nodes)
    graph.output.append(onnx.helper.make_empty_tensor_value_info(out))  # alive until compared
    return out


def _close(original: np.ndarray, rebuilt: np.ndarray) -> bool:
    scale = max(float(np.abs(original).max()), 1e-6)
    return original.shape == rebuilt.shape and float(np.abs(original - rebuilt).max()) <= 1e-4 * scale
