"""A Triton Inference Server model repository for a Grad-CAM graph: DIR/NAME/config.pbtxt and DIR/NAME/1/model.onnx.

The graph is plain ONNX with the explanation inside, so Triton's onnxruntime backend serves it as it
is: every camera's frame goes in as a uint8 tensor, Triton batches the requests of many cameras
(dynamic batching), and each client asks back only the outputs its method needs. Inputs and outputs
come from the graph's own contract (the batch axis left to `max_batch_size`, as Triton wants); its
metadata (labels, layers, contract version) travel as the model's `parameters`, where clients read
them from the server. The text is checked by parsing it with Triton's own model-config protobuf,
which tritonclient ships, before anything is written.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from realtime import contract
from realtime.engines.remote import KSERVE_TYPES
from realtime.files import create_new, folder_for, partial_path

# one table: engines/remote.py's
TRITON_TYPES = {ort_type: f"TYPE_{kserve}" for kserve, ort_type in KSERVE_TYPES.items()}
TENSORRT_PRECISIONS = ("fp16", "fp32")
DEVICES = {"gpu": "KIND_GPU", "cpu": "KIND_CPU"}
BACKENDS = ("onnxruntime", "python")
PYTHON_MODEL = Path(__file__).with_name("python_model.py")  # the Python-backend variant's model.py


class TritonRepoError(ValueError):
    """The repository cannot be written as asked; the message says what to change."""


@dataclass(frozen=True)
class TritonOptions:
    max_batch_size: int = 8  # the most frames Triton gathers into one call
    queue_delay_us: int = 500  # how long a request may wait for others to batch with
    dynamic_batching: bool = True  # False: each request runs alone (the load benchmark's comparison)
    instances: int = 1  # copies of the model per device
    device: str = "gpu"  # gpu | cpu: where those copies run
    tensorrt: str | None = None  # fp16 | fp32: onnxruntime's TensorRT accelerator inside Triton
    backend: str = "onnxruntime"  # or python: the same graph run by onnxruntime in Triton's Python backend


@dataclass(frozen=True)
class Tensor:
    name: str
    triton_type: str
    dims: tuple[int, ...]  # with the batch axis first; -1 where the graph leaves a dim free


def contract_tensors(graph: Path) -> tuple[list[Tensor], list[Tensor], dict[str, str]]:
    """The graph's inputs, outputs and metadata as onnxruntime reads them, checked against the contract."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own error types
        raise TritonRepoError(f"{graph} is not a loadable ONNX graph ({str(exc).splitlines()[0][:160]})") from exc
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    inputs, outputs = session.get_inputs(), session.get_outputs()
    try:
        contract.validate(
            {i.name: i.shape for i in inputs}, {o.name: o.shape for o in outputs}, metadata, str(graph),
            {i.name: i.type for i in inputs},
        )  # fmt: skip
    except contract.ContractError as exc:
        raise TritonRepoError(str(exc)) from exc
    return [_tensor(v) for v in inputs], [_tensor(v) for v in outputs], metadata


def _tensor(value: object) -> Tensor:
    name, kind, shape = value.name, value.type, value.shape  # type: ignore[attr-defined]
    if kind not in TRITON_TYPES:
        raise TritonRepoError(f"{name} is {kind}, which this repository writer does not map to Triton")
    dims = tuple(d if isinstance(d, int) and d > 0 else -1 for d in shape)
    return Tensor(name, TRITON_TYPES[kind], dims)


def config_text(name: str, inputs: Sequence[Tensor], outputs: Sequence[Tensor], metadata: dict[str, str],
                options: TritonOptions) -> str:  # fmt: skip
    """config.pbtxt for Triton's onnxruntime (or Python) backend. A graph with its batch baked in (one image
    per call) gets `max_batch_size: 0` and its full dims: Triton then neither batches it nor strips the axis."""
    serves = 'platform: "onnxruntime_onnx"' if options.backend == "onnxruntime" else 'backend: "python"'
    batching = metadata.get(contract.META_BATCH) != "1"
    lines = [f'name: "{name}"', serves, f"max_batch_size: {options.max_batch_size if batching else 0}"]
    for kind, tensors in (("input", inputs), ("output", outputs)):
        entries = ", ".join(
            f'{{ name: "{t.name}" data_type: {t.triton_type} dims: [ {_dims(t, batching)} ] }}' for t in tensors
        )
        lines.append(f"{kind} [ {entries} ]")
    if options.dynamic_batching and batching:
        lines.append(f"dynamic_batching {{ max_queue_delay_microseconds: {options.queue_delay_us} }}")
    lines.append(f"instance_group [ {{ kind: {DEVICES[options.device]} count: {options.instances} }} ]")
    for key, value in sorted(metadata.items()):
        lines.append(f"parameters {{ key: {json.dumps(key)} value: {{ string_value: {json.dumps(value)} }} }}")
    if options.tensorrt is not None:
        lines.append(
            'optimization { execution_accelerators { gpu_execution_accelerator: [ { name: "tensorrt" '
            f'parameters {{ key: "precision_mode" value: "{options.tensorrt.upper()}" }} }} ] }} }}'
        )
    return "\n".join(lines) + "\n"


def _dims(tensor: Tensor, batching: bool) -> str:
    """Triton's dims leave out the batch axis of a model it batches (max_batch_size > 0)."""
    return ", ".join(map(str, tensor.dims[1:] if batching else tensor.dims))


def parse_config(text: str) -> object:
    """The text as Triton's ModelConfig message; a TritonRepoError when Triton would not read it."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:
        raise TritonRepoError(
            'checking config.pbtxt needs tritonclient: pip install "tritonclient[grpc]" (the export extra has it)'
        ) from exc
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise TritonRepoError(f"the generated config.pbtxt does not parse as Triton's ModelConfig: {exc}") from exc


def write_repository(graph: Path, repo: Path, name: str | None = None, options: TritonOptions | None = None) -> Path:
    """repo/NAME/config.pbtxt and repo/NAME/1/model.onnx, each written under a temporary name and moved in;
    returns the model's folder."""
    options = options or TritonOptions()
    if options.tensorrt is not None and options.tensorrt not in TENSORRT_PRECISIONS:
        raise TritonRepoError(f"--triton-tensorrt {options.tensorrt!r}: choose {' or '.join(TENSORRT_PRECISIONS)}")
    if options.backend not in BACKENDS:
        raise TritonRepoError(f"backend {options.backend!r}: choose {' or '.join(BACKENDS)}")
    if options.backend == "python" and (options.tensorrt is not None or options.device != "cpu"):
        raise TritonRepoError("the Python-backend variant runs onnxruntime on the CPU: no TensorRT, device cpu")
    if options.max_batch_size < 1:
        raise TritonRepoError(f"max_batch_size {options.max_batch_size}: Triton batches need at least 1")
    name = name or graph.stem
    if not name.replace("_", "").replace("-", "").isalnum():
        raise TritonRepoError(f"model name {name!r}: use letters, digits, - and _ (it is a folder and a URL part)")
    if repo.exists() and not repo.is_dir():
        raise TritonRepoError(f"--triton-repo {repo}: that is a file; give a folder")
    inputs, outputs, metadata = contract_tensors(graph)
    text = config_text(name, inputs, outputs, metadata, options)
    parse_config(text)
    folder = repo / name
    with folder_for(folder / "1" / "model.onnx"):
        for data in _external_data(graph):  # the weights first: a model.onnx never points at missing data
            _copy(graph.parent / data, folder / "1" / data)
        _copy(graph, folder / "1" / "model.onnx")
        if options.backend == "python":
            _copy(PYTHON_MODEL, folder / "1" / "model.py")
        _replace(folder / "config.pbtxt", lambda tmp: tmp.write_text(text))
    return folder


def _copy(source: Path, target: Path) -> None:
    _replace(target, lambda tmp: shutil.copyfile(source, tmp))


def _replace(path: Path, write: Callable[[Path], object]) -> None:
    tmp = partial_path(path, ".tmp", "")
    try:
        os.close(create_new(tmp))  # a new regular file of ours, at a name nobody could guess: then filled
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _external_data(graph: Path) -> list[str]:
    """The files a graph over 2 GB keeps its weights in, relative to it (they travel with model.onnx)."""
    import onnx

    model = onnx.load(str(graph), load_external_data=False)
    found = {
        entry.value
        for init in model.graph.initializer
        if init.data_location == onnx.TensorProto.EXTERNAL
        for entry in init.external_data
        if entry.key == "location"
    }
    return sorted(found)
