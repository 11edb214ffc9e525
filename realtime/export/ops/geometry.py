"""Sliding-window geometry, read once for convolutions and pools: kernel, strides, explicit pads.

Both pool paths and the convolution read a node's window through these, so `auto_pad` means the
same thing everywhere (SAME_UPPER / SAME_LOWER resolved to the pads it used, VALID to none).
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from realtime.export.graph.index import attrs, text


def explicit_pads(node: onnx.NodeProto, x: tuple[int, ...], y: tuple[int, ...], kernel: list[int]) -> list[int]:
    """The pads a window op used ([begin..., end...]), also when it said auto_pad; x, y: spatial sizes."""
    a = attrs(node)
    auto_pad = text(a.get("auto_pad"), "NOTSET")
    spatial = len(kernel)
    if auto_pad in ("NOTSET", ""):
        return list(a.get("pads", [0] * 2 * spatial))
    if auto_pad == "VALID":
        return [0] * 2 * spatial
    strides = list(a.get("strides", [1] * spatial))
    dilations = list(a.get("dilations", [1] * spatial))
    begin, end = [], []
    for i in range(spatial):
        total = max(0, (y[i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - x[i])
        small, large = total // 2, total - total // 2
        begin.append(small if auto_pad == "SAME_UPPER" else large)
        end.append(large if auto_pad == "SAME_UPPER" else small)
    return begin + end


@dataclass(frozen=True)
class Window:
    """A 2-D pool's window as it ran."""

    kernel: tuple[int, int]
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, left, bottom, right
    dilations: tuple[int, int]
    ceil_mode: bool

    @property
    def non_overlapping(self) -> bool:
        """Windows that tile the input without overlap or padding (classifier heads' pools)."""
        return self.kernel == self.strides and not any(self.pads) and self.dilations == (1, 1)


def pool_window(node: onnx.NodeProto, x: tuple[int, ...] | None = None, y: tuple[int, ...] | None = None) -> Window:
    """The window of a 2-D MaxPool / AveragePool; `x`, `y` (spatial sizes) resolve a SAME auto_pad."""
    a = attrs(node)
    kernel = [int(k) for k in a.get("kernel_shape", [])]
    if len(kernel) != 2:
        raise ValueError(f"node {node.name!r} ({node.op_type}): only 2-D pools, kernel {kernel}")
    strides = [int(s) for s in a.get("strides", [1, 1])]
    auto_pad = text(a.get("auto_pad"), "NOTSET")
    if auto_pad.startswith("SAME") and (x is None or y is None):
        raise ValueError(f"node {node.name!r} ({node.op_type}): auto_pad {auto_pad} needs static sizes")
    pads = explicit_pads(node, x or (0, 0), y or (0, 0), kernel)
    dilations = [int(d) for d in a.get("dilations", [1, 1])]
    return Window(
        (kernel[0], kernel[1]),
        (strides[0], strides[1]),
        (pads[0], pads[1], pads[2], pads[3]),
        (dilations[0], dilations[1]),
        bool(a.get("ceil_mode", 0)),
    )


def non_overlapping_window(
    node: onnx.NodeProto, x: tuple[int, ...] | None = None, y: tuple[int, ...] | None = None
) -> Window | None:
    """The window when it tiles the input (the pools' fast path and the pooled shortcut), else None;
    `x`, `y` (spatial sizes) resolve a SAME auto_pad."""
    try:
        window = pool_window(node, x, y)
    except ValueError:
        return None
    return window if window.non_overlapping else None
