"""Any ONNX image classifier in: one float 4-D input, a dynamic batch, a static spatial size."""

from __future__ import annotations

from pathlib import Path

import onnx

from realtime.export.graph.builder import MIN_OPSET, model_opset
from realtime.export.graph.layout import NCHW, NHWC
from realtime.export.importers import ForwardGraph, ModelImportError
from realtime.export.importers.passes import batch
from realtime.export.importers.passes import onnx_normalize as normalize
from realtime.export.importers.passes.einsum import einsums_as_products
from realtime.export.importers.passes.folded_batch import unfold_batch_folds
from realtime.export.importers.passes.group_norm import group_norms_as_instance_norms
from realtime.export.importers.passes.probe import probe
from realtime.export.importers.passes.reshape_chains import collapse_batch_folding_chains
from realtime.export.importers.passes.select_early import select_before_the_tail
from realtime.export.importers.passes.sequence_first import batch_first_attention
from realtime.export.importers.passes.splits import splits_to_slices
from realtime.export.importers.passes.strided import flat_gathers_per_image
from realtime.export.importers.passes.unbind import picks_before_transposes
from realtime.export.messages import first_line
from realtime.export.ops import TENSORRT_MAX_OPSET
from realtime.model_files import ModelFileError, NotProtobufError, check_model_file

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
    channels_first, channels_last = dims[1] == 3 and dims[3] != 3, dims[3] == 3 and dims[1] != 3
    if (given == NHWC and channels_first) or (given == NCHW and channels_last):
        says = NCHW if channels_first else NHWC
        raise ModelImportError(f"--layout {given} contradicts the input's shape {dims}, which is {says}; drop --layout")
    if given:
        return given
    if dims[1] == 3 and dims[3] != 3:
        return NCHW
    if dims[3] == 3 and dims[1] != 3:
        return NHWC
    raise ModelImportError(f"cannot tell the input layout from its shape {dims}; pass --layout NCHW or NHWC")


def load_onnx(
    path: Path,
    layout: str | None = None,
    input_size: tuple[int, int] | None = None,
    name: str | None = None,
    output_name: str | None = None,
) -> ForwardGraph:
    """Read an ONNX classifier (its external data too) and normalise it (onnx_normalize): the spatial size
    fixed (given or read from the model), shape arithmetic folded, the batch dynamic where that checks out."""
    if not path.exists():
        raise ModelImportError(f"--onnx {path}: no such file")
    if path.stat().st_size == 0:
        raise ModelImportError(f"--onnx {path}: the file is empty; export the model again")
    try:
        check_model_file(path)  # before onnx reads anything the file points at
    except NotProtobufError as exc:
        raise ModelImportError(f"--onnx {path}: not an ONNX model ({exc.detail})") from exc
    except ModelFileError as exc:
        raise ModelImportError(f"--onnx {exc}") from exc
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        first = first_line(exc, 160)
        raise ModelImportError(f"--onnx {path}: not an ONNX model ({first})") from exc
    normalize.lower_ir_version(model)
    if model_opset(model) < MIN_OPSET:
        from onnx import version_converter

        try:
            model = version_converter.convert_version(model, OPSET)
        except Exception as exc:  # the converter's own errors: an op it cannot carry across opsets
            first = first_line(exc, 160)
            raise ModelImportError(
                f"--onnx {path}: opset {model_opset(model)} could not be converted to {OPSET} ({first}); "
                f"re-export the model with opset {OPSET}"
            ) from exc
    if model_opset(model) > TENSORRT_MAX_OPSET:
        model = _converted_down(model, path)
    normalize.constants_to_initializers(model)
    normalize.name_nodes(model)
    normalize.choose_logits(model, output_name)
    value = _image_input(model)
    shape = value.type.tensor_type.shape
    dims = [d.dim_value if d.HasField("dim_value") else None for d in shape.dim]
    chosen = _layout(dims, layout)
    spatial = (2, 3) if chosen == NCHW else (1, 2)
    if input_size is None and any(not dims[a] for a in spatial):
        input_size = _size_in_metadata(model)  # Ultralytics writes imgsz beside a dynamic input
    if input_size is not None:
        dims[spatial[0]], dims[spatial[1]] = input_size
    if any(dims[a] is None or dims[a] == 0 for a in spatial):
        raise ModelImportError(f"input {value.name!r} has a dynamic spatial size {dims}; pass --input-size HxW")
    channels = dims[1] if chosen == NCHW else dims[3]
    if any((dims[a] or 0) > MAX_SIDE for a in spatial) or (channels or 0) > MAX_CHANNELS:
        raise ModelImportError(f"input {value.name!r} declares {dims}: more than {MAX_SIDE} pixels a side or "
                               f"{MAX_CHANNELS} channels, which the import would allocate; pass --input-size HxW")
    for axis in spatial:
        shape.dim[axis].Clear()
        shape.dim[axis].dim_value = int(dims[axis])  # type: ignore[arg-type]
    del model.graph.value_info[:]
    initializers = {init.name for init in model.graph.initializer}
    keep = [v for v in model.graph.input if v.name not in initializers]  # old exporters list weights as inputs
    del model.graph.input[:]
    model.graph.input.extend(keep)
    _batch_axis(model, "N")
    per_image = [int(d) if d else 3 for d in dims[1:]]
    flat_gathers_per_image(model)  # torch's as_strided, before the batch is settled
    einsums_as_products(model)  # MaxViT's attention, a mixer's token MLP: MatMuls between Transposes
    group_norms_as_instance_norms(model)  # the ONNX op has no shape inference: written as torch writes it
    batch_first_attention(model, value.name, per_image)  # nn.MultiheadAttention's [T, N, C] blocks
    picks_before_transposes(model)  # attention's q, k, v with the batch first throughout
    static = _settle_batch(model, value.name, per_image)
    splits_to_slices(model)  # q, k and v: one output per node for the backward
    collapse_batch_folding_chains(model)  # dynamo's K^T through [N*heads, T, d]
    unfolded = unfold_batch_folds(model)  # windows, patches, tokens folded into the batch: now [N, X, ...]
    if unfolded.changed and static:
        _batch_axis(model, "N")
        static = _settle_batch(model, value.name, per_image)
    select_before_the_tail(model)  # a ViT's class token before its per-token tail
    return ForwardGraph(model, value.name, chosen, name or path.stem, static_batch=static,
                        folded=unfolded.folded, folded_why=unfolded.refused)  # fmt: skip


def _converted_down(model: onnx.ModelProto, path: Path) -> onnx.ModelProto:
    """A file newer than TensorRT's parser reads, at its newest opset (opset 21's GroupNormalization, which
    has no older form, written as torch writes it first)."""
    from onnx import version_converter

    group_norms_as_instance_norms(model)
    try:
        return version_converter.convert_version(model, TENSORRT_MAX_OPSET)
    except Exception as exc:  # the converter's own errors: an op it cannot carry across opsets
        raise ModelImportError(
            f"--onnx {path}: opset {model_opset(model)} could not be converted to {TENSORRT_MAX_OPSET} "
            f"({first_line(exc, 160)}); re-export the model with opset {TENSORRT_MAX_OPSET} or older"
        ) from exc


MAX_SIDE = 8192  # pixels: a model input larger than this is a declaration, not an image (the probe allocates it)
MAX_CHANNELS = 4


def _size_in_metadata(model: onnx.ModelProto) -> tuple[int, int] | None:
    """(height, width) from an `imgsz` metadata entry such as "[640, 640]", or None."""
    text = next((p.value for p in model.metadata_props if p.key == "imgsz"), "")
    parts = text.strip("[]() ").split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        return None
    height, width = (int(p) for p in parts)
    return (height, width) if 0 < height <= 8192 and 0 < width <= 8192 else None


def _batch_axis(model: onnx.ModelProto, size: int | str) -> None:
    """The inputs' and outputs' batch axis: named ("N", dynamic) or fixed (1, where it could not be freed)."""
    for value in (*model.graph.input, *model.graph.output):
        shape = value.type.tensor_type.shape
        if shape.dim:
            shape.dim[0].Clear()
            if isinstance(size, str):
                shape.dim[0].dim_param = size
            else:
                shape.dim[0].dim_value = size


def _settle_batch(model: onnx.ModelProto, input_name: str, dims: list[int]) -> bool:
    """Make the batch dynamic where it is baked in, fold shape arithmetic, and check that batch 2 gives
    each image its own logits. Returns True when the graph must stay at batch 1."""
    rewritten = batch.batch_one_reshapes_to_dynamic(model)
    batch.batch_one_constants_follow_the_batch(model)
    try:
        seen = probe(model, input_name, dims, normalize.shape_only_tensors(model))
        normalize.fold_shape_arithmetic(model, seen)
        freed = seen.batch_free
    except ModelImportError:  # freed, it does not even run on one image: the file's own targets are tried
        if not rewritten:
            raise
        freed = False
    if freed:
        return False
    batch.restore(model, rewritten)  # the batch stays 1: the targets as the file had them
    normalize.fold_shape_arithmetic(model, probe(model, input_name, dims, normalize.shape_only_tensors(model)))
    _batch_axis(model, 1)
    return True
