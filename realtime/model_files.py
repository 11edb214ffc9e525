"""A model file may read only what sits in its own folder: checked before onnx or onnxruntime opens it.

An ONNX file can name other files to read its weights from ("external data"). Older onnx and onnxruntime
releases (which Jetson images often carry) follow a location that is absolute, climbs out with `..`, is a
symlink shipped beside the model pointing elsewhere, or is onnxruntime's in-memory `_ORT_MEM_ADDR_` marker;
sparse initializers add their own out-of-bounds reads. Current releases refuse these; this module refuses
them too, whatever is installed, by reading the protobuf's structure itself (no onnx needed, the weights'
bytes skipped, not copied): `gradcam-export --onnx`, `gradcam-live --model` and `GradCam(path)` call it first.

It also bounds the walk: a file of a million nested subgraphs (If inside If ...) is refused before anything
recurses into it.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from pathlib import Path

from realtime.contract import ContractError

MAX_DEPTH = 32  # subgraphs inside subgraphs: real models nest two or three
MAX_NODES = 5_000_000  # nodes in all graphs: the largest real models have a few hundred thousand

# field numbers in onnx.proto: the messages that can hold tensors, and where
MODEL_GRAPH, MODEL_FUNCTIONS = 7, 25
GRAPH_NODE, GRAPH_INITIALIZER, GRAPH_SPARSE = 1, 5, 15
NODE_ATTRIBUTE = 5
FUNCTION_NODE = 7
ATTR_TENSOR, ATTR_GRAPH, ATTR_TENSORS, ATTR_GRAPHS, ATTR_SPARSE, ATTR_SPARSES = 5, 6, 10, 11, 22, 23
TENSOR_EXTERNAL_DATA = 13
ENTRY_KEY, ENTRY_VALUE = 1, 2


class ModelFileError(ContractError):
    """A model file that would read outside its folder, or that no real model resembles; says what to do."""


class NotProtobufError(ModelFileError):
    """Bytes that do not parse as an ONNX file at all (the loaders' own words for it are kept)."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(f"{path}: not a loadable ONNX model ({detail}); check the file")
        self.path, self.detail = path, detail


def check_model_file(path: Path) -> None:
    """Refuse `path` (one line, a ModelFileError) when its tensors point outside its folder or it holds sparse
    initializers; nothing is loaded."""
    folder = Path(os.path.realpath(path.parent))
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size == 0:
            return  # the loaders say "empty" in their own words
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            walk = _Walk(memoryview(data), path, folder)
            try:
                walk.model(0, size)
            finally:
                walk.view.release()


class _Walk:
    def __init__(self, view: memoryview, path: Path, folder: Path) -> None:
        self.view, self.path, self.folder, self.nodes = view, path, folder, 0

    def fields(self, start: int, end: int) -> Iterator[tuple[int, int, int]]:
        """(field number, value start, value end) of each length-delimited field in [start, end)."""
        view, at = self.view, start
        while at < end:
            key, at = _varint(view, at, end, self.path)
            number, wire = key >> 3, key & 7
            if wire == 0:
                _, at = _varint(view, at, end, self.path)
            elif wire == 1:
                at += 8
            elif wire == 5:
                at += 4
            elif wire == 2:
                length, at = _varint(view, at, end, self.path)
                if at + length > end:
                    raise NotProtobufError(self.path, "a field runs past its end")
                yield number, at, at + length
                at += length
            else:
                raise NotProtobufError(self.path, f"wire type {wire}")

    def model(self, start: int, end: int) -> None:
        for number, a, b in self.fields(start, end):
            if number == MODEL_GRAPH:
                self.graph(a, b, 0)
            elif number == MODEL_FUNCTIONS:
                for inner, c, d in self.fields(a, b):
                    if inner == FUNCTION_NODE:
                        self.node(c, d, 1)

    def graph(self, start: int, end: int, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise ModelFileError(f"{self.path}: subgraphs nest more than {MAX_DEPTH} deep; no model needs that")
        for number, a, b in self.fields(start, end):
            if number == GRAPH_NODE:
                self.node(a, b, depth)
            elif number == GRAPH_INITIALIZER:
                self.tensor(a, b)
            elif number == GRAPH_SPARSE:
                self.sparse()

    def node(self, start: int, end: int, depth: int) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise ModelFileError(f"{self.path}: more than {MAX_NODES} nodes; no model needs that")
        for number, a, b in self.fields(start, end):
            if number != NODE_ATTRIBUTE:
                continue
            for inner, c, d in self.fields(a, b):
                if inner in (ATTR_TENSOR, ATTR_TENSORS):
                    self.tensor(c, d)
                elif inner in (ATTR_GRAPH, ATTR_GRAPHS):
                    self.graph(c, d, depth + 1)
                elif inner in (ATTR_SPARSE, ATTR_SPARSES):
                    self.sparse()

    def sparse(self) -> None:
        raise ModelFileError(f"{self.path}: holds sparse tensors, which this project does not read; "
                             "save the model with dense weights")  # fmt: skip

    def tensor(self, start: int, end: int) -> None:
        for number, a, b in self.fields(start, end):
            if number != TENSOR_EXTERNAL_DATA:
                continue
            entry = {inner: bytes(self.view[c:d]) for inner, c, d in self.fields(a, b)}
            if entry.get(ENTRY_KEY) == b"location":
                self.location(entry.get(ENTRY_VALUE, b"").decode("utf-8", "replace"))

    def location(self, where: str) -> None:
        """External data must be a plain relative name that resolves, symlinks followed, inside the folder."""
        shown = where[:80].encode("unicode_escape").decode()
        if not where or where.startswith("_ORT_MEM_ADDR_") or "\x00" in where:
            raise ModelFileError(f"{self.path}: a tensor's external data location {shown!r} is not a file name")
        target = Path(os.path.realpath(self.folder / where))
        if Path(where).is_absolute() or ".." in Path(where).parts or not target.is_relative_to(self.folder):
            raise ModelFileError(f"{self.path}: a tensor's weights are read from {shown!r}, outside the model's "
                                 "folder; keep the model and its .data files together in one folder")  # fmt: skip


def _varint(view: memoryview, at: int, end: int, path: Path) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= end or shift > 63:
            raise NotProtobufError(path, "a number runs past its end")
        byte = view[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
