"""onnxruntime session for a Grad-CAM graph: providers, warm-up, IO binding, CamResult.

The engine holds no per-frame state: `run` takes frames and targets and
returns a frozen CamResult.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from realtime import contract
from realtime.contract import ContractError, ModelInfo
from realtime.cpu import int8_warning
from realtime.providers import (
    CPU,
    CUDA,
    TRT,
    EngineOptions,
    cpu_session_options,
    describe_providers,
    provider_chain,
)
from realtime.replay import Replays, cuda_graph_session


class ModelNotFoundError(FileNotFoundError):
    """No model file where the user pointed; the message says how to make one."""


@dataclass(frozen=True)
class LayerMaps:
    """One explained layer's outputs for a batch (see contract.layer_output)."""

    activations: np.ndarray  # [N,h,w,k]
    weights: np.ndarray  # [N,K,k]
    cam: np.ndarray  # [N,K,h,w]
    gradients: np.ndarray | None  # [N,K,h,w,k]


@dataclass(frozen=True)
class CamResult:
    """Everything one onnxruntime call returns for a batch, plus the time it took."""

    logits: np.ndarray  # [N,C]
    probabilities: np.ndarray  # [N,C]
    classes: np.ndarray  # [N,K]
    activations: np.ndarray | None  # [N,h,w,k]
    weights: np.ndarray  # [N,K,k]
    cam: np.ndarray  # [N,K,h,w], the graph's own Grad-CAM
    gradients: np.ndarray | None  # [N,K,h,w,k] for `full` graphs
    seconds: float
    provider: str
    labels: Sequence[str] = field(repr=False, default=())
    more_layers: tuple[LayerMaps, ...] = field(repr=False, default=())  # layers 1.. of a version 2 graph
    saliency: np.ndarray | None = field(repr=False, default=None)  # [N,K,H,W,3] at the model input
    guided: np.ndarray | None = field(repr=False, default=None)  # [N,K,H,W,3] guided backpropagation
    lost: str = ""  # a served model's server gone: why (the panels show it instead of maps); "" normally

    @property
    def layer_count(self) -> int:
        return 1 + len(self.more_layers)

    def layer(self, index: int) -> LayerMaps:
        """Layer `index`'s outputs; 0 is the version 1 outputs above."""
        if index == 0:
            assert self.activations is not None
            return LayerMaps(self.activations, self.weights, self.cam, self.gradients)
        return self.more_layers[index - 1]

    def top(self, index: int = 0, k: int = 5) -> list[tuple[int, str, float]]:
        """The k most probable classes of image `index`: (id, name, probability)."""
        probs = self.probabilities[index]
        order = np.argsort(-probs, kind="stable")[:k]
        return [(int(c), self.labels[c] if c < len(self.labels) else str(c), float(probs[c])) for c in order]


def export_command(path: Path) -> str:
    """The gradcam-export line that writes `path`, read from the exporter's default name
    <source>_gradcam_<pooled|full>[_int8].onnx; VGG16 from Keras only for a name that says vgg16."""
    stem, gradients, int8 = path.stem, "full", ""
    if stem.endswith("_int8"):
        stem, int8 = stem[: -len("_int8")], " --int8"
    for kind in ("pooled", "full"):
        if stem.endswith(f"_gradcam_{kind}"):
            stem, gradients = stem[: -len(f"_gradcam_{kind}")], kind
    options = f"--gradients {gradients}{int8} --output {path}"
    if stem == "vgg16":
        return f"gradcam-export --weights imagenet {options} (offline: --weights PATH or --weights random)"
    return f"gradcam-export --onnx {stem}.onnx {options} (your classifier exported to ONNX)"


def contract_feeds(profile: str, images: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """The graph's inputs for uint8 frames and int64 targets, in its profile's types: the trt8 profile
    takes the image as float32 (the cast TensorRT 8 may not parse, done here) and int32 targets."""
    if profile == contract.PROFILE_TRT8:
        return {contract.INPUT_IMAGE: images.astype(np.float32), contract.INPUT_TARGETS: targets.astype(np.int32)}
    return {contract.INPUT_IMAGE: images, contract.INPUT_TARGETS: targets}


def same_model(copy: Any, original: Any) -> bool:
    """An fp16 copy is the original's when its contract metadata (model, layers, labels) is the same."""
    keys = (contract.META_MODEL_NAME, contract.META_LAYERS, contract.META_LAYER, contract.META_LABELS)
    a, b = (dict(s.get_modelmeta().custom_metadata_map) for s in (copy, original))
    return all(a.get(k) == b.get(k) for k in keys)


class Engine:
    """A loaded, validated and warmed-up Grad-CAM graph."""

    def __init__(self, model_path: str | Path, options: EngineOptions | None = None) -> None:

        self.options = options or EngineOptions()
        path = Path(model_path)
        if not path.exists():
            hint = f"Make one with: {export_command(path)}, or try gradcam-live --demo"
            raise ModelNotFoundError(f"no model at {path}. {hint}")
        providers = provider_chain(self.options)
        self.session = self._open(path, providers, prepack=False)
        half = contract.fp16_copy(path)
        if self.session.get_providers()[0] == CUDA and half != path and half.exists():  # faster on CUDA
            copy = self._open(half, providers, prepack=False)
            if same_model(copy, self.session):  # not a stale copy of another export
                self.session, path = copy, half
        metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        int8 = metadata.get(contract.META_PRECISION, "fp32").startswith("int8")
        if int8:
            self.session = self._open(path, providers, prepack=True)  # int8 kernels want packed weights
        self.provider = self.session.get_providers()[0]
        self.cpu_warning: str | None = None  # one line when an int8 graph does not suit this CPU
        if int8 and self.provider == CPU:
            self.cpu_warning = int8_warning(metadata.get(contract.META_INT8_TARGET), str(path))
        self.notice = describe_providers(
            self.options.providers, providers[0][0], self.provider, metadata.get(contract.META_PRECISION, "fp32")
        )
        if path == half and half != Path(model_path):
            self.notice += f"; its fp16 copy {half.name} runs instead"
        inputs = {i.name: i.shape for i in self.session.get_inputs()}
        outputs = {o.name: o.shape for o in self.session.get_outputs()}
        types = {i.name: i.type for i in self.session.get_inputs()}
        self.info: ModelInfo = contract.validate(inputs, outputs, metadata, str(path), types)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.path = path
        self._on_gpu = self.provider in (TRT, CUDA)
        self._replays: Replays | None = None
        if self.options.cuda_graph:
            if self.provider == CUDA:
                self._replays = Replays(cuda_graph_session(path, self.options), self._every_output)
            else:
                self.notice += f"; --cuda-graph needs the CUDA provider, so {self.provider} runs without it"
        self._warm_up()

    def _warm_up(self) -> None:
        self.warmup_ms = 0.0  # the last warm-up call: what a frame will cost, known before the first one
        for _ in range(self.options.warmup):
            blank = np.zeros((1, self.info.input_height, self.info.input_width, 3), np.uint8)
            self.warmup_ms = self.run(blank, [[-1]]).seconds * 1000.0

    def _open(self, path: Path, providers: list[tuple[str, dict[str, str]]], prepack: bool) -> Any:
        import onnxruntime as ort

        options = cpu_session_options(self.options.threads, prepack)
        probing = providers[0][0] != CPU
        if probing:  # a missing CUDA prints two long errors from the process-wide logger; one line is enough
            ort.set_default_logger_severity(4)
        try:
            # onnxruntime's Python wrapper prints its own multi-line "EP Error ... Falling back" banner
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                return ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise ContractError(
                f"{path} is not a loadable ONNX model ({type(exc).__name__}: {exc}); re-export it with gradcam-export"
            ) from exc
        finally:
            if probing:
                ort.set_default_logger_severity(2)  # onnxruntime's default: warnings

    def _every_output(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, dict(feeds)), strict=True))

    @property
    def has_gradients(self) -> bool:
        return self.info.has_gradients_output

    @property
    def provides(self) -> frozenset[str]:
        """What the graph gives besides Grad-CAM at its first layer (contract.GRADIENTS, SALIENCY, ...)."""
        return self.info.provides

    def check_targets(self, targets: np.ndarray) -> None:
        bad = targets[(targets < -1) | (targets >= self.info.num_classes)]
        if bad.size:
            raise ValueError(
                f"class id {int(bad[0])} is out of range 0..{self.info.num_classes - 1} (or -1 for ranked)"
            )
        if targets.shape[1] > self.info.num_classes:
            raise ValueError(f"top-k {targets.shape[1]} exceeds the model's {self.info.num_classes} classes")
        if targets.shape[1] > contract.MAX_TARGETS:
            raise ValueError(f"{targets.shape[1]} targets per image; the graph explains at most {contract.MAX_TARGETS}")

    def run(
        self, images: np.ndarray, targets: Sequence[Sequence[int]] | np.ndarray, need_gradients: bool = True
    ) -> CamResult:
        """One onnxruntime call for a batch of model-sized BGR uint8 images."""
        images = np.ascontiguousarray(images, dtype=np.uint8)
        expected = (self.info.input_height, self.info.input_width, 3)
        if images.ndim != 4 or images.shape[1:] != expected:
            raise ValueError(f"images must be [N,{expected[0]},{expected[1]},3] uint8, got {images.shape}")
        target_array = np.asarray(targets, dtype=np.int64)
        if target_array.ndim == 1:
            target_array = np.broadcast_to(target_array, (images.shape[0], target_array.shape[0]))
        elif target_array.ndim == 2 and target_array.shape[0] == 1:  # one row of targets for every image
            target_array = np.broadcast_to(target_array, (images.shape[0], target_array.shape[1]))
        target_array = np.ascontiguousarray(target_array)
        self.check_targets(target_array)
        wanted = [n for n in self.output_names if need_gradients or n not in self.info.gradient_outputs]
        start = time.perf_counter()
        if self.info.max_batch == 1 and len(images) > 1:  # a graph with its batch baked in: one call per image
            calls = [self._call(images[i : i + 1], target_array[i : i + 1], wanted) for i in range(len(images))]
            values = {name: np.concatenate([call[name] for call in calls]) for name in wanted}
        else:
            values = self._call(images, target_array, wanted)
        seconds = time.perf_counter() - start
        more = tuple(
            LayerMaps(
                values[contract.layer_output(contract.OUT_ACTIVATIONS, i)],
                values[contract.layer_output(contract.OUT_WEIGHTS, i)],
                values[contract.layer_output(contract.OUT_CAM, i)],
                values.get(contract.layer_output(contract.OUT_GRADIENTS, i)),
            )
            for i in range(1, len(self.info.layers))
        )
        classes = values[contract.OUT_CLASSES]
        wrong = classes[(classes < 0) | (classes >= self.info.num_classes)]
        if wrong.size:  # a graph that is not this contract's, or an edited one: its ids index the labels
            raise contract.ContractError(
                f"{self.path}: its classes output holds {int(wrong[0])}, outside 0..{self.info.num_classes - 1}; "
                "re-export the graph with gradcam-export"
            )
        return CamResult(
            logits=values[contract.OUT_LOGITS],
            probabilities=values[contract.OUT_PROBABILITIES],
            classes=values[contract.OUT_CLASSES],
            activations=values.get(contract.OUT_ACTIVATIONS),
            weights=values[contract.OUT_WEIGHTS],
            cam=values[contract.OUT_CAM],
            gradients=values.get(contract.OUT_GRADIENTS),
            seconds=seconds,
            provider=self.provider,
            labels=self.info.labels,
            more_layers=more,
            saliency=values.get(contract.OUT_SALIENCY),
            guided=values.get(contract.OUT_GUIDED),
        )

    def _call(self, images: np.ndarray, targets: np.ndarray, wanted: Sequence[str]) -> dict[str, np.ndarray]:
        feeds = contract_feeds(self.info.profile, images, targets)
        replayed = self._replays.run(feeds, wanted) if self._replays is not None else None
        if replayed is not None:
            values = replayed
        elif self._on_gpu and self.options.io_binding:
            values = self._run_bound(feeds, wanted)
        else:
            values = dict(zip(wanted, self.session.run(wanted, feeds), strict=True))
        if contract.OUT_CLASSES in values:  # the trt8 profile gives int32
            values[contract.OUT_CLASSES] = values[contract.OUT_CLASSES].astype(np.int64, copy=False)
        return values

    def _run_bound(self, feeds: Mapping[str, np.ndarray], wanted: Sequence[str]) -> dict[str, np.ndarray]:
        """GPU path: inputs copied once, wanted outputs copied back, the rest left on the device."""
        binding = self.session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, value)
        for name in self.output_names:
            binding.bind_output(name, "cpu" if name in wanted else "cuda")
        self.session.run_with_iobinding(binding)
        values = binding.get_outputs()
        return {n: v.numpy() for n, v in zip(self.output_names, values, strict=True) if n in wanted}


def working_gpu_provider(model_path: str | Path) -> str | None:
    """The GPU provider onnxruntime really runs `model_path` on here (TensorRT or CUDA), or None.

    Listing a provider in get_available_providers() proves nothing: onnxruntime-gpu lists CUDA
    and TensorRT on machines without a GPU and falls back at session creation.
    """
    try:
        engine = Engine(model_path, EngineOptions(providers="auto", warmup=0))
    except (ContractError, ModelNotFoundError):
        return None
    return engine.provider if engine.provider in (TRT, CUDA) else None
