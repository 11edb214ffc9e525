"""Any ONNX image classifier in: one float 4-D input, a dynamic batch, a static spatial size."""

from __future__ import annotations

from pathlib import Path

import onnx

from realtime.export.graph.builder import MIN_OPSET, model_opset
from realtime.export.graph.layout import NCHW, NHWC
from realtime.export.importers import ForwardGraph, ModelImportError

OPSET = 17


def _image_input(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    initializers = {init.name for init in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    if len(inputs) != 1:
        names = ", ".join(v.name for v in inputs)
        raise ModelImportError(f"the model has {len(inputs)} inputs ({names}); an image classifier has one")
    value = inputs[0]
    if len(value.type.tensor_type.shape.dim) != 4 or value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise ModelImportError(f"input {value.name!r} is not a float 4-D image tensor")
    return value


def _layout(dims: list[int | None], given: str | None) -> str:
    if given:
        return given
    if dims[1] == 3 and dims[3] != 3:
        return NCHW
    if dims[3] == 3 and dims[1] != 3:
        return NHWC
    raise ModelImportError(f"cannot tell the input layout from its shape {dims}; pass --layout NCHW or NHWC")


def load_onnx(
    path: Path, layout: str | None = None, input_size: tuple[int, int] | None = None, name: str | None = None
) -> ForwardGraph:
    """Read an ONNX classifier; batch becomes dynamic, spatial size is fixed (given or read from the model)."""
    if not path.exists():
        raise ModelImportError(f"--onnx {path}: no such file")
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise ModelImportError(f"--onnx {path}: not an ONNX model ({type(exc).__name__}: {exc})") from exc
    if model_opset(model) < MIN_OPSET:
        from onnx import version_converter

        model = version_converter.convert_version(model, OPSET)
    value = _image_input(model)
    shape = value.type.tensor_type.shape
    dims = [d.dim_value if d.HasField("dim_value") else None for d in shape.dim]
    chosen = _layout(dims, layout)
    spatial = (2, 3) if chosen == NCHW else (1, 2)
    if input_size is not None:
        dims[spatial[0]], dims[spatial[1]] = input_size
    if any(dims[a] is None or dims[a] == 0 for a in spatial):
        raise ModelImportError(f"input {value.name!r} has a dynamic spatial size {dims}; pass --input-size HxW")
    shape.dim[0].Clear()
    shape.dim[0].dim_param = "N"
    for axis in spatial:
        shape.dim[axis].Clear()
        shape.dim[axis].dim_value = int(dims[axis])  # type: ignore[arg-type]
    for out in model.graph.output:
        if out.type.tensor_type.shape.dim:
            out.type.tensor_type.shape.dim[0].Clear()
            out.type.tensor_type.shape.dim[0].dim_param = "N"
    del model.graph.value_info[:]
    initializers = {init.name for init in model.graph.initializer}
    keep = [v for v in model.graph.input if v.name not in initializers]  # old exporters list weights as inputs
    del model.graph.input[:]
    model.graph.input.extend(keep)
    return ForwardGraph(model, value.name, chosen, name or path.stem)
