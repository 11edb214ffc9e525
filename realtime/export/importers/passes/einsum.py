"""Einsum written as the matrix product it is.

torchvision's MaxViT writes attention as `einsum("B G H I D, B G H J D -> B G H I J", q, k)`, and
MLP-mixers write their token mixing as `einsum("nm,bmc->bnc", w, x)`. Every two-operand equation
with one summed letter and one free letter on one side is a MatMul between Transposes: the backward,
the TensorRT check and int8 then read the one op they already know.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from realtime.export.graph.index import attrs, text


@dataclass(frozen=True)
class Product:
    """An equation as Transpose(A) @ Transpose(B), then a Transpose to the output's order."""

    first: tuple[int, ...]  # A's axes as [batch..., free..., summed]
    second: tuple[int, ...]  # B's axes as [batch..., summed, free]
    output: tuple[int, ...]  # the product's axes in the equation's output order
    swapped: bool = False  # computed as B @ A (A has the free letters B needs to be the right operand)


def as_product(equation: str) -> Product | None:
    """The MatMul form of a two-operand equation, or None where it has none (diagonals, ellipses,
    several summed letters, a free letter missing on either side)."""
    compact = equation.replace(" ", "")
    if "..." in compact or "->" not in compact:
        return None
    inputs, out = compact.split("->")
    operands = inputs.split(",")
    if len(operands) != 2:
        return None
    a, b = operands
    if any(len(set(term)) != len(term) for term in (a, b, out)) or set(out) - set(a) - set(b):
        return None
    product = _product(a, b, out)
    if product is None:
        swapped = _product(b, a, out)
        product = swapped if swapped is None else Product(swapped.second, swapped.first, swapped.output, True)
    return product


def _product(a: str, b: str, out: str) -> Product | None:
    """`a @ b` in matrix form, or None."""
    batch = [c for c in out if c in a and c in b]
    summed = [c for c in a if c in b and c not in out]
    free_a = [c for c in out if c in a and c not in b]
    free_b = [c for c in out if c in b and c not in a]
    if len(summed) != 1 or len(free_b) != 1 or not free_a or (batch and len(free_a) != 1):
        return None
    if set(a) != {*batch, *free_a, *summed} or set(b) != {*batch, *summed, *free_b}:
        return None  # a letter summed away on one side only
    order = [*batch, *free_a, *free_b]
    return Product(
        tuple(a.index(c) for c in [*batch, *free_a, *summed]),
        tuple(b.index(c) for c in [*batch, *summed, *free_b]),
        tuple(order.index(c) for c in out),
    )


def einsums_as_products(model: onnx.ModelProto) -> int:
    """Rewrite each Einsum that is a matrix product; returns how many were rewritten."""
    graph = model.graph
    rewritten = 0
    for node in [n for n in graph.node if n.op_type == "Einsum" and len(n.input) == 2]:
        product = as_product(text(attrs(node).get("equation")))
        if product is None:
            continue
        at = list(graph.node).index(node)
        graph.node.remove(node)
        stem = node.output[0]
        operands, new = [], []
        for operand, axes, tag in ((node.input[0], product.first, "a"), (node.input[1], product.second, "b")):
            if axes == tuple(range(len(axes))):
                operands.append(operand)
                continue
            operands.append(f"{stem}/{tag}")
            new.append(onnx.helper.make_node("Transpose", [operand], [operands[-1]], name=f"{node.name}/{tag}",
                                             perm=list(axes)))  # fmt: skip
        identity = product.output == tuple(range(len(product.output)))
        result = stem if identity else f"{stem}/product"
        ordered = operands[::-1] if product.swapped else operands
        new.append(onnx.helper.make_node("MatMul", ordered, [result], name=f"{node.name}/product"))
        if not identity:
            new.append(onnx.helper.make_node("Transpose", [result], [stem], name=node.name, perm=list(product.output)))
        for offset, added in enumerate(new):
            graph.node.insert(at + offset, added)
        rewritten += 1
    return rewritten
