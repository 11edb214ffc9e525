"""Torch twins that take the exported graph's kink decisions: each ReLU's mask, each max pool's routing.

Two runtimes' float32 forwards differ by about 1e-6 relative: enough to move a ReLU's input across
zero, or a max pool's first maximum to its near-equal neighbour. Those are decisions, not arithmetic:
the torch references take them from the graph's own forward (tests.helpers.graph_values), and
everything else is torch autograd.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import onnx
import torch


def module_at(model: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        model = model[int(part)] if part.isdigit() else getattr(model, part)
    return model


class RoutedMaxPool(torch.nn.Module):  # type: ignore[misc,name-defined]
    """A max pool whose backward routes by given pool inputs (the exported graph's), first maximum first."""

    def __init__(self, pool: Any, routing_input: Any) -> None:
        super().__init__()
        self.pool, self.routing_input = pool, routing_input

    def forward(self, x: Any) -> Any:
        _, indices = torch.nn.functional.max_pool2d(
            self.routing_input, self.pool.kernel_size, self.pool.stride, self.pool.padding, self.pool.dilation,
            ceil_mode=self.pool.ceil_mode, return_indices=True,
        )  # fmt: skip
        flat = x.flatten(2)
        return torch.gather(flat, 2, indices.flatten(2)).view(indices.shape)


def route_pools(model: Any, pool_inputs: list[np.ndarray]) -> Any:
    """`model` with every MaxPool2d routed by the pool inputs the Grad-CAM graph computed."""
    pools = [(name, m) for name, m in model.named_modules() if isinstance(m, torch.nn.MaxPool2d)]
    if not pools:
        return model
    assert len(pool_inputs) == len(pools), (len(pool_inputs), [p for p, _ in pools])
    for (name, pool), value in zip(pools, pool_inputs, strict=True):
        owner, _, last = name.rpartition(".")
        parent = module_at(model, owner) if owner else model
        routed = RoutedMaxPool(pool, torch.from_numpy(value))
        if last.isdigit():
            parent[int(last)] = routed
        else:
            setattr(parent, last, routed)
    return model


def pool_input(node: onnx.NodeProto) -> str | None:
    return node.input[0] if node.op_type == "MaxPool" else None


def relu_output(node: onnx.NodeProto) -> str | None:
    return node.output[0] if node.op_type == "Relu" else None


def relu_output_or_pool_input(node: onnx.NodeProto) -> str | None:
    return pool_input(node) or relu_output(node)


def of_type(op_type: str, values: list[tuple[str, np.ndarray]]) -> list[np.ndarray]:
    return [value for op, value in values if op == op_type]


@contextlib.contextmanager
def relu_masks_from(relu_outputs: list[np.ndarray]) -> Any:
    """Within the block, torch's ReLUs keep exactly the units the graph's forward ReLUs kept, in order."""
    masks = [torch.from_numpy(value > 0) for value in relu_outputs]
    original = torch.nn.functional.relu
    calls = iter(masks)

    def relu(x: Any, inplace: bool = False) -> Any:
        mask = next(calls)
        assert mask.shape == x.shape, (mask.shape, x.shape)
        return x * mask

    torch.nn.functional.relu = relu
    try:
        yield
        assert next(calls, None) is None, "torch ran fewer ReLUs than the graph has"
    finally:
        torch.nn.functional.relu = original


@contextlib.contextmanager
def guided_relu_masks_from(relu_outputs: list[np.ndarray], grad_cam: Any) -> Any:
    """pytorch-grad-cam's guided ReLUs, each fed an input whose sign is the graph's forward decision
    (a straight-through nudge of the units the two runtimes put on opposite sides of zero)."""
    masks = iter([torch.from_numpy(value > 0) for value in relu_outputs])
    module = grad_cam.guided_backprop.GuidedBackpropReLUasModule
    original = module.forward

    def forward(self: Any, x: Any) -> Any:
        mask = next(masks)
        decided = torch.where(mask, x.clamp(min=1e-30), x.clamp(max=0.0))
        return original(self, x + (decided - x).detach())

    module.forward = forward
    try:
        yield
    finally:
        module.forward = original
