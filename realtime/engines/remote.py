"""A Grad-CAM graph served by Triton (or any KServe v2 server), behind the same interface as a local one.

`grpc://HOST:8001/NAME` or `http://HOST:8000/NAME` wherever a model path goes (gradcam-live --model,
GradCam(...)). The contract is read from the server: inputs and outputs from the model's metadata, the
labels, layers and version from its config's parameters (what gradcam-export --triton-repo writes). Frames
travel as uint8 tensors, and only the outputs the chosen method needs come back.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from realtime import contract
from realtime.engines.calls import contract_feeds, lost_result, run_batch, warm_up
from realtime.engines.providers import EngineOptions
from realtime.engines.result import CamResult

SCHEMES = ("grpc", "http")


KSERVE_TYPES = {"UINT8": "tensor(uint8)", "INT64": "tensor(int64)", "INT32": "tensor(int32)",
                "FP32": "tensor(float)", "FP16": "tensor(float16)"}  # fmt: skip


RETRY_S = 1.0  # a lost server is tried again this often (each try may wait for its connection to fail)


REQUEST_TIMEOUT_S = 5.0  # a server that does not answer within this is lost, like one that went away


class RemoteModelError(ConnectionError):
    """The server or the model cannot be reached or read; the message says what to check."""


def is_remote(model: str | Path) -> bool:
    return str(model).startswith(tuple(f"{scheme}://" for scheme in SCHEMES))


@dataclass(frozen=True)
class Address:
    scheme: str
    host: str  # host:port
    model: str

    @staticmethod
    def parse(url: str) -> Address:
        scheme, _, rest = url.partition("://")
        host, _, model = rest.partition("/")
        if scheme not in SCHEMES or not host or not model or "/" in model:
            raise RemoteModelError(f"{url}: write grpc://HOST:PORT/NAME or http://HOST:PORT/NAME")
        return Address(scheme, host, model)


def _client(address: Address) -> tuple[Any, Any]:
    try:
        if address.scheme == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
    except (ImportError, RuntimeError) as exc:  # tritonclient.http raises RuntimeError without its extra
        raise RemoteModelError('a served model needs tritonclient: pip install "tritonclient[grpc,http]"') from exc
    if address.scheme == "http":  # a server that hangs, not only one that is gone, must come back as lost
        return module, module.InferenceServerClient(address.host, network_timeout=REQUEST_TIMEOUT_S)
    return module, module.InferenceServerClient(address.host)


class RemoteEngine:
    """A served Grad-CAM graph (an engines.Engine): calls sent to the server, checked and answered as a local one's."""

    def __init__(self, url: str, options: EngineOptions | None = None) -> None:
        self.options = options or EngineOptions()
        self.address = Address.parse(url)
        self._module, self._server = _client(self.address)
        name = self.address.model
        try:
            as_json = {"as_json": True} if self.address.scheme == "grpc" else {}  # http answers in JSON anyway
            meta = self._server.get_model_metadata(name, **as_json)
            config = self._server.get_model_config(name, **as_json)
        except Exception as exc:  # tritonclient's InferenceServerException, or the connection refused
            raise RemoteModelError(f"{url}: cannot read the model from the server ({_first(exc)})") from exc
        config = config.get("config", config)
        metadata = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}

        def shapes(values: list[dict]) -> dict[str, list[object]]:
            return {v["name"]: [int(d) if int(d) > 0 else None for d in v["shape"]] for v in values}

        types = {v["name"]: KSERVE_TYPES.get(v["datatype"], v["datatype"]) for v in meta["inputs"]}
        self.info = contract.validate(shapes(meta["inputs"]), shapes(meta["outputs"]), metadata, url, types)
        self.output_names = [v["name"] for v in meta["outputs"]]
        self.path = Path(name)
        self.provider = f"Triton at {self.address.scheme}://{self.address.host}"
        self.notice = f"{name}: served by {self.provider}"
        self.cpu_warning: str | None = None
        self._answered, self._tried_at = False, 0.0
        self._lost_since: float | None = None
        self.say: Callable[[str], None] = lambda line: print(f"gradcam: {line}", file=sys.stderr)
        self.warmup_ms = warm_up(self.run, self.info, self.options.warmup)

    @property
    def provides(self) -> frozenset[str]:
        return self.info.provides

    def run(
        self, images: np.ndarray, targets: Sequence[Sequence[int]] | np.ndarray, need_gradients: bool = True
    ) -> CamResult:
        """One call on the server. Once it has answered, a server that goes away gives `lost` results
        (the panels say so) while it is tried again every RETRY_S, and real ones as soon as it is back."""
        if self._lost_since is not None and time.monotonic() - self._tried_at < RETRY_S:
            return self._lost(images, targets)
        try:
            result = run_batch(
                self.info, self.output_names, self._call, images, targets, need_gradients, self.provider, self.path
            )
        except RemoteModelError as exc:
            if not self._answered:  # never reached: the caller says so and stops
                raise
            self._tried_at = time.monotonic()
            if self._lost_since is None:
                self._lost_since = self._tried_at
                self.say(f"{exc}; reconnecting every {RETRY_S:.0f} s")
            return self._lost(images, targets)
        if self._lost_since is not None:
            self.say(f"{self.address.model}: the server is back after {time.monotonic() - self._lost_since:.0f} s")
            self._lost_since = None
        self._answered = True
        return result

    def _lost(self, images: np.ndarray, targets: Sequence[Sequence[int]] | np.ndarray) -> CamResult:
        k = np.asarray(targets).shape[-1]
        return lost_result(self.info, len(images), k, self.provider, "server lost: reconnecting")

    def _call(self, images: np.ndarray, targets: np.ndarray, wanted: list[str]) -> dict[str, np.ndarray]:
        module = self._module
        feeds = contract_feeds(self.info.profile, images, targets)
        inputs = []
        for name, value in feeds.items():
            tensor = module.InferInput(name, list(value.shape), _kserve_type(value.dtype))
            tensor.set_data_from_numpy(np.ascontiguousarray(value))
            inputs.append(tensor)
        outputs = [module.InferRequestedOutput(name) for name in wanted]
        try:
            timeout = {"client_timeout": REQUEST_TIMEOUT_S} if self.address.scheme == "grpc" else {}
            result = self._server.infer(self.address.model, inputs, outputs=outputs, **timeout)
        except Exception as exc:  # tritonclient's InferenceServerException, or the connection lost
            raise RemoteModelError(f"{self.address.model}: the server did not answer ({_first(exc)})") from exc
        return {name: result.as_numpy(name) for name in wanted}


def _kserve_type(dtype: np.dtype) -> str:
    return {np.dtype(np.uint8): "UINT8", np.dtype(np.int64): "INT64", np.dtype(np.int32): "INT32",
            np.dtype(np.float32): "FP32"}[np.dtype(dtype)]  # fmt: skip


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
