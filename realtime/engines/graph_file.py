"""An exported graph file opened in onnxruntime, whatever it explains: providers, its fp16 copy, int8 prepacking.

Every local engine (a classifier's, a detector's) opens its file here, so the provider probing, the
fp16 copy on CUDA and the int8 warnings are said the same way for both; the contract is read after.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from realtime import contract
from realtime.contract import ContractError
from realtime.engines.int8_cpu import int8_warning
from realtime.engines.providers import CPU, CUDA, EngineOptions, cpu_session_options, describe_providers, provider_chain
from realtime.model_files import check_model_file


class ModelNotFoundError(FileNotFoundError):
    """No model file where the user pointed; the message says how to make one."""


@dataclass(frozen=True)
class OpenedGraph:
    """A session of an exported graph, and what to tell the user about where it runs."""

    session: Any
    path: Path  # the file that runs (the fp16 copy on CUDA, where there is a current one)
    provider: str
    notice: str
    cpu_warning: str | None
    metadata: dict[str, str]

    @property
    def task(self) -> str:
        return self.metadata.get(contract.META_TASK, contract.TASK_CLASSIFY)

    def shapes(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
        """Input shapes, output shapes and input types, as onnxruntime reports them."""
        inputs = {i.name: i.shape for i in self.session.get_inputs()}
        outputs = {o.name: o.shape for o in self.session.get_outputs()}
        return inputs, outputs, {i.name: i.type for i in self.session.get_inputs()}


def export_command(path: Path) -> str:
    """The gradcam-export line that writes `path`, read from the exporter's default name
    <source>_gradcam_<pooled|full>[_int8].onnx; VGG16 from Keras only for a name that says vgg16."""
    stem, gradients, int8 = path.stem, "full", ""
    if stem.endswith("_int8"):
        stem, int8 = stem[: -len("_int8")], " --int8"
    if stem.endswith("_gradcam_detector"):
        return f"gradcam-export --onnx {stem[: -len('_gradcam_detector')]}.onnx --output {path} (your YOLO's ONNX file)"
    for kind in ("pooled", "full"):
        if stem.endswith(f"_gradcam_{kind}"):
            stem, gradients = stem[: -len(f"_gradcam_{kind}")], kind
    options = f"--gradients {gradients}{int8} --output {path}"
    if stem == "vgg16":
        return f"gradcam-export --weights imagenet {options} (offline: --weights PATH or --weights random)"
    return f"gradcam-export --onnx {stem}.onnx {options} (your classifier exported to ONNX)"


def same_model(copy: Any, original: Any) -> bool:
    """An fp16 copy is the original's when its contract metadata (model, layers, labels) is the same."""
    keys = (contract.META_MODEL_NAME, contract.META_LAYERS, contract.META_LAYER, contract.META_LABELS)
    a, b = (dict(s.get_modelmeta().custom_metadata_map) for s in (copy, original))
    return all(a.get(k) == b.get(k) for k in keys)


def open_graph(model_path: str | Path, options: EngineOptions) -> OpenedGraph:
    """The file's session on the first provider that loads it; its fp16 copy instead on CUDA (when current)."""
    path = Path(model_path)
    if not path.exists():
        hint = f"Make one with: {export_command(path)}, or try gradcam-live --demo"
        raise ModelNotFoundError(f"no model at {path}. {hint}")
    check_model_file(path)  # before onnxruntime reads anything the file points at
    providers = provider_chain(options)
    session = _open(path, providers, options, prepack=False)
    half = contract.fp16_copy(path)
    if session.get_providers()[0] == CUDA and half != path and half.exists():  # faster on CUDA
        copy = _open(half, providers, options, prepack=False)
        if same_model(copy, session):  # not a stale copy of another export
            session, path = copy, half
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    int8 = metadata.get(contract.META_PRECISION, "fp32").startswith("int8")
    if int8:
        session = _open(path, providers, options, prepack=True)  # int8 kernels want packed weights
    provider = session.get_providers()[0]
    warning = int8_warning(metadata.get(contract.META_INT8_TARGET), str(path)) if int8 and provider == CPU else None
    notice = describe_providers(options.providers, providers[0][0], provider, metadata.get(contract.META_PRECISION,
                                                                                            "fp32"))  # fmt: skip
    if path == half and half != Path(model_path):
        notice += f"; its fp16 copy {half.name} runs instead"
    return OpenedGraph(session, path, provider, notice, warning, metadata)


def _open(path: Path, providers: list[tuple[str, dict[str, str]]], options: EngineOptions, prepack: bool) -> Any:
    import onnxruntime as ort

    session_options = cpu_session_options(options.threads, prepack)
    probing = providers[0][0] != CPU
    if probing:  # a missing CUDA prints two long errors from the process-wide logger; one line is enough
        ort.set_default_logger_severity(4)
    try:
        # onnxruntime's Python wrapper prints its own multi-line "EP Error ... Falling back" banner
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return ort.InferenceSession(str(path), session_options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise ContractError(
            f"{path} is not a loadable ONNX model ({type(exc).__name__}: {exc}); re-export it with gradcam-export"
        ) from exc
    finally:
        if probing:
            ort.set_default_logger_severity(2)  # onnxruntime's default: warnings
