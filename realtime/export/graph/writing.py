"""Atomic writes: a file appears complete and checked, or not at all.

Everything goes to a temporary name in the destination folder and is moved
into place with os.replace, which is atomic on one filesystem. A SIGKILL
leaves at most a `.NAME.PID-RANDOM.onnx.tmp` (created new: nothing planted at a guessable name is written
through), which the next export removes once that process is gone; SIGTERM and Ctrl-C remove it on the
way out.

A graph over protobuf's 2 GB limit is written as ONNX external data: the graph and its weights
(`NAME.onnx.<id>.data`, a new name on every write) are written and checked together in a temporary
folder beside the output, then moved into place, the data first; only then is the data file of the graph
it replaced removed (that one only: a concurrent export's data file is left to its own graph), so a kill
at any point, or a second export beside it, leaves a graph that reads its own weights.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import onnx
from onnx.external_data_helper import load_external_data_for_model, set_external_data

from realtime.files import create_new, folder_for, partial_path, remove_stale

T = TypeVar("T")
TMP_SUFFIX = ".onnx.tmp"
INLINE_LIMIT = 2**31 - 2**24  # bytes: protobuf cannot serialize a message of 2 GB or more
SIZE_MARGIN = 2**24  # bytes: what `_approximate_size` leaves out (names, shapes, metadata) is far less
EXTERNAL_THRESHOLD = 1024  # bytes: smaller tensors stay in the graph file when the weights go external


class GraphWriteError(RuntimeError):
    """The graph could not be written (a full disk, a folder gone); the previous file, if any, is kept."""


def save_checked(model: onnx.ModelProto, output: Path, check: Callable[[Path], T]) -> T:
    """Write `model` under a temporary name, run `check` on that file, and only then move it to `output`."""
    try:
        with folder_for(output):  # a check that fails leaves no empty folder behind
            remove_stale(output.parent, TMP_SUFFIX)
            if _approximate_size(model) >= INLINE_LIMIT:
                return _save_external(model, output, check)
            return _save_inline(model, output, check)
    except OSError as exc:
        try:
            free = f"{shutil.disk_usage(output.parent).free / 2**20:.0f} MB free there"
        except OSError:
            free = "its folder is gone"
        kept = f"; the previous {output.name} is kept" if output.exists() else ""
        raise GraphWriteError(f"cannot write {output}: {exc.strerror or exc} ({free}){kept}") from exc


def _approximate_size(model: onnx.ModelProto) -> int:
    """The serialized size to within a few MB: the raw weights by their length, the rest by ByteSize.
    (ByteSize of the whole model serializes it: 2.5 s for VGG16, for a number this gives in 0.1 s.)"""
    graph = model.graph
    weights = sum(_tensor_size(tensor) for tensor in graph.initializer)
    parts = (graph.node, graph.sparse_initializer, graph.input, graph.output, graph.value_info, model.functions)
    return weights + sum(item.ByteSize() for part in parts for item in part) + SIZE_MARGIN


def _tensor_size(tensor: onnx.TensorProto) -> int:
    raw = len(tensor.raw_data)
    return raw + len(tensor.name) + 8 * len(tensor.dims) + 16 if raw else tensor.ByteSize()  # name, dims, tags


def _save_inline(model: onnx.ModelProto, output: Path, check: Callable[[Path], T]) -> T:
    tmp = partial_path(output, TMP_SUFFIX, "")
    try:
        with os.fdopen(create_new(tmp), "wb") as file:  # a new file of ours: nothing planted is written through
            file.write(model.SerializeToString())
        result = check(tmp)
        old_data = _data_files(output)
        os.replace(tmp, output)
        _drop_old_data(output, old_data, keep=None)
        return result
    finally:
        tmp.unlink(missing_ok=True)


def _save_external(model: onnx.ModelProto, output: Path, check: Callable[[Path], T]) -> T:
    """The graph and its weights as NAME.onnx + NAME.onnx.data, checked in a folder beside the output."""
    folder = partial_path(output, TMP_SUFFIX, "")
    data = f"{output.name}.{secrets.token_hex(4)}.data"
    try:
        folder.mkdir()
        for tensor in model.graph.initializer:  # float weights out; integer shapes stay in for shape inference
            if tensor.data_type == onnx.TensorProto.FLOAT and len(tensor.raw_data) >= EXTERNAL_THRESHOLD:
                set_external_data(tensor, data)
        onnx.save_model(model, str(folder / output.name))
        # saving moved the weights out of `model`; the checks read them from memory, so they come back
        load_external_data_for_model(model, str(folder))
        result = check(folder / output.name)
        if (folder / data).exists():
            os.replace(folder / data, output.with_name(data))
        old_data = _data_files(output)
        os.replace(folder / output.name, output)
        _drop_old_data(output, old_data, keep=data)
        return result
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _data_files(graph: Path) -> set[str]:
    """The external-data files the graph now at `graph` reads (its own `NAME.onnx.<id>.data`), if any."""
    try:
        model = onnx.load(str(graph), load_external_data=False)
    except Exception:  # no graph there yet, or not one: nothing of its to remove
        return set()
    found = set()
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location" and entry.value.startswith(f"{graph.name}.") and entry.value.endswith(".data"):
                found.add(entry.value)
    return found


def _drop_old_data(output: Path, old: set[str], keep: str | None) -> None:
    """Remove the weight files of the graph this write replaced, and only those: another export of the same
    graph running beside this one has placed its own data file, which its graph will read."""
    for name in old - {keep}:
        if "/" not in name and name == Path(name).name:
            (output.parent / name).unlink(missing_ok=True)
