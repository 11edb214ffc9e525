"""The Python API: explain frames from your own code, no loop, no window.

from realtime import GradCam
cam = GradCam("model.onnx", providers="auto")
result = cam(frame_bgr, method="gradcam++", top_k=3)
shown = result.overlay(frame_bgr, alpha=0.4)   # a new array; frame_bgr is untouched
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from realtime import arguments
from realtime.contract import DetectorInfo
from realtime.detections import Detections, detections
from realtime.engines.opening import open_engine
from realtime.engines.protocol import Engine
from realtime.engines.providers import EngineOptions
from realtime.engines.result import CamResult, DetectResult, Result
from realtime.maps import methods
from realtime.maps.explain import maps_for
from realtime.maps.query import Query, box_targets, explained_columns, resolve_class, targets_for
from realtime.sources.fitting import Region, fit, letterbox, model_region
from realtime.sources.frame import to_bgr
from realtime.view.overlay import DEFAULT_ALPHA, DEFAULT_STYLE, blend
from realtime.view.panels import label_of


@dataclass(frozen=True)
class Explanation:
    """What a model saw in one frame: its explained classes and one normalised map per class."""

    classes: tuple[int, ...]  # the explained class ids, one per map
    labels: tuple[str, ...]  # their names
    probabilities: tuple[float, ...]  # their probabilities
    maps: np.ndarray  # [K,h,w] in [0,1], at the layer's resolution (the input's for saliency, guided-gradcam)
    method: str
    top: tuple[tuple[int, str, float], ...]  # the five most probable classes: (id, name, probability)
    ms: float  # the model call's time (shared by every frame of a batch)
    region: Region  # where in the frame the model looked (all of it, unless fit="center")

    def __post_init__(self) -> None:
        maps = np.array(self.maps, copy=True)  # frozen means the maps too: a read-only copy of its own
        maps.setflags(write=False)
        object.__setattr__(self, "maps", maps)

    def overlay(
        self, frame_bgr: np.ndarray, alpha: float = DEFAULT_ALPHA, style: str = DEFAULT_STYLE,
        index: int = 0,
    ) -> np.ndarray:  # fmt: skip
        """The frame with map `index` laid over the part the model saw: a new array."""
        return blend(to_bgr(frame_bgr), self.maps[index], alpha, self.region, style)


class GradCam:
    """A Grad-CAM graph (from gradcam-export) ready to explain BGR frames of any size."""

    def __init__(
        self, model: str | Path, providers: str = "auto", threads: int | None = None, fit_mode: str = "squash",
        warmup: int = 1, cuda_graph: bool = False,
    ) -> None:  # fmt: skip
        threads = arguments.threads(threads)
        options = EngineOptions(providers=providers, threads=threads, warmup=warmup, cuda_graph=cuda_graph)
        self.engine = open_engine(model, options)  # a grpc:// or http:// address: a model Triton serves
        self.fit_mode = fit_mode
        if self.engine.cpu_warning:  # an int8 graph made for VNNI on a CPU without it
            warnings.warn(self.engine.cpu_warning, RuntimeWarning, stacklevel=2)

    @property
    def labels(self) -> Sequence[str]:
        return self.engine.info.labels

    @property
    def methods(self) -> list[str]:
        """The methods this graph can serve (a `pooled` graph: Grad-CAM only)."""
        return methods.usable_methods(self.engine.provides)

    def __call__(
        self, frame_bgr: np.ndarray, method: str = "gradcam", top_k: int = 1, target: int | str | None = None,
        layer: int = 0,
    ) -> Explanation | Detections:  # fmt: skip
        """Explain one frame: the top-k classes, or `target` (an id or a label) first; `layer` indexes the
        graph's explained layers (several with gradcam-export --layer A --layer B). A detector's graph gives
        Detections: every kept box, the best `top_k` (at least 8) explained, of class `target` if given."""
        return self.batch([frame_bgr], method, top_k, target, layer)[0]

    def batch(
        self, frames_bgr: Sequence[np.ndarray], method: str = "gradcam", top_k: int = 1,
        target: int | str | None = None, layer: int = 0,
    ) -> list[Explanation] | list[Detections]:  # fmt: skip
        """Explain several frames in one model call (faster per frame than one call each)."""
        if len(frames_bgr) == 0:
            raise ValueError("batch() needs at least one frame")
        top_k = arguments.top_k(top_k)
        if isinstance(self.engine.info, DetectorInfo):
            return self._detect(frames_bgr, method, top_k, target)
        spec = methods.method(method)
        lacking = spec.lacking(self.engine.provides)
        if lacking:
            raise methods.MethodNeedsGradientsError(f"{method} needs {lacking}; {self.engine.path} lacks them")
        name = None if target is None else str(target)
        class_id = resolve_class(name, self.labels, str(self.engine.path), name="target")
        if not 0 <= layer < len(self.engine.info.layers):
            raise ValueError(f"layer={layer!r}: {self.engine.path} explains {len(self.engine.info.layers)} layer(s)")
        query = Query(method=method, class_name=name, top_k=top_k, layer=layer)
        info = self.engine.info
        size = (info.input_height, info.input_width)
        images = [to_bgr(f) for f in frames_bgr]
        batch = np.stack([fit(im, size, self.fit_mode) for im in images])
        result = _answered(self.engine, self.engine.run(batch, [targets_for(query, class_id)] * len(images),
                                                        spec.needs_gradients))  # fmt: skip
        assert isinstance(result, CamResult)
        columns = explained_columns(query, class_id)
        explained = []
        for i, image in enumerate(images):
            ids = tuple(int(result.classes[i, c]) for c in columns)
            explained.append(
                Explanation(
                    classes=ids,
                    labels=tuple(label_of(result, c) for c in ids),
                    probabilities=tuple(float(result.probabilities[i, c]) for c in ids),
                    maps=maps_for(result, i, query, class_id),
                    method=method,
                    top=tuple(result.top(i, 5)),
                    ms=result.seconds * 1000.0,
                    region=model_region(image.shape, size, self.fit_mode),
                )
            )
        return explained

    def _detect(
        self, frames_bgr: Sequence[np.ndarray], method: str, top_k: int, target: int | str | None
    ) -> list[Detections]:
        """Every kept box of each frame, the best `top_k` (at least EXPLAINED_BOXES) explained by `method`."""
        info = self.engine.info
        assert isinstance(info, DetectorInfo)
        lacking = methods.method(method).lacking(self.engine.provides)
        if lacking:
            raise methods.MethodNeedsGradientsError(f"{method} needs {lacking}; a detector graph gives gradients")
        name = None if target is None else str(target)
        class_id = resolve_class(name, self.labels, str(self.engine.path), name="target")
        row = box_targets(Query(method=method, box=top_k - 1), class_id, info.max_boxes)
        images = [to_bgr(f) for f in frames_bgr]
        fitted = [letterbox(image, (info.input_height, info.input_width)) for image in images]
        result = _answered(self.engine, self.engine.run(np.stack([f[0] for f in fitted]), [row] * len(images)))
        assert isinstance(result, DetectResult)
        return [
            detections(result, i, method, placement, image.shape, len(row))
            for i, (image, (_, placement)) in enumerate(zip(images, fitted, strict=True))
        ]


def _answered(engine: Engine, result: Result) -> Result:
    """The result, or ServerLostError when a served model's server did not answer: the API never hands out the
    placeholder the live view draws as a lost panel."""
    if result.lost:
        from realtime.engines.remote import ServerLostError

        raise ServerLostError(f"{engine.path}: {result.lost}; check the server (GradCam tries it again on the "
                              "next call)")  # fmt: skip
    return result
