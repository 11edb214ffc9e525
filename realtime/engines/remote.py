"""A Grad-CAM graph served by Triton (or any KServe v2 server), behind the same interface as a local one.

`grpc://HOST:8001/NAME` or `http://HOST:8000/NAME` wherever a model path goes (gradcam-live --model,
GradCam(...)). The contract is read from the server: inputs and outputs from the model's metadata, the
labels, layers and version from its config's parameters (what gradcam-export --triton-repo writes). Frames
travel as uint8 tensors, and only the outputs the chosen method needs come back.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from realtime import contract
from realtime.engines.calls import contract_feeds, lost_result, run_batch, warm_up
from realtime.engines.providers import EngineOptions
from realtime.engines.result import CamResult
from realtime.engines.worker import Closed, DeadlineError, Worker, wait

SCHEMES = ("grpc", "http")


KSERVE_TYPES = {"UINT8": "tensor(uint8)", "INT64": "tensor(int64)", "INT32": "tensor(int32)",
                "FP32": "tensor(float)", "FP16": "tensor(float16)"}  # fmt: skip


RETRY_S = 1.0  # a lost server is probed again this often, in the background


REQUEST_TIMEOUT_S = 5.0  # the deadline for a whole answer: a server slower than this is lost, like one gone


class RemoteModelError(ConnectionError):
    """The server or the model cannot be reached or read; the message says what to check."""


class ServerLostError(RemoteModelError):
    """The Python API's answer when a served model's server stopped answering: never a made-up result."""


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


def _client(address: Address) -> tuple[Any, Callable[[], Any]]:
    """tritonclient's module for the scheme, and how to make a client (on the thread that will use it)."""
    try:
        if address.scheme == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
    except (ImportError, RuntimeError) as exc:  # tritonclient.http raises RuntimeError without its extra
        raise RemoteModelError('a served model needs tritonclient: pip install "tritonclient[grpc,http]"') from exc
    if address.scheme == "http":  # a server that hangs must come back as lost, not block a thread for ever
        return module, lambda: module.InferenceServerClient(address.host, network_timeout=REQUEST_TIMEOUT_S)
    return module, lambda: module.InferenceServerClient(address.host)


class RemoteEngine:
    """A served Grad-CAM graph (an engines.Engine): calls sent to the server, checked and answered as a local one's.

    Safe to call from any thread: the client lives on the engine's own worker thread (engines.worker), and each
    answer has a deadline, REQUEST_TIMEOUT_S for the whole answer. A server that stops answering gives results
    marked `lost` at once, while a background probe tries it again every RETRY_S; the view never waits on it."""

    def __init__(self, url: str, options: EngineOptions | None = None) -> None:
        self.options = options or EngineOptions()
        self.address = Address.parse(url)
        self._module, self._make_client = _client(self.address)
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._worker = Worker(self._make_client)
        name = self.address.model
        try:
            as_json = {"as_json": True} if self.address.scheme == "grpc" else {}  # http answers in JSON anyway
            meta = self._ask(lambda c: c.get_model_metadata(name, **as_json))
            config = self._ask(lambda c: c.get_model_config(name, **as_json))
        except Exception as exc:  # tritonclient's InferenceServerException, the connection refused, no answer
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
        self._answered = False
        self._lost_since: float | None = None
        self._probe: Future[Any] | None = None
        self._probed_at = 0.0
        self.say: Callable[[str], None] = lambda line: print(f"gradcam: {line}", file=sys.stderr)
        self.warmup_ms = warm_up(self.run, self.info, self.options.warmup)

    @property
    def provides(self) -> frozenset[str]:
        return self.info.provides

    def run(
        self, images: np.ndarray, targets: Sequence[Sequence[int]] | np.ndarray, need_gradients: bool = True
    ) -> CamResult:
        """One call on the server. Once it has answered, a server that goes away gives `lost` results at once
        (the panels say so; the API raises) while a probe tries it again in the background, and real ones as
        soon as it is back."""
        if self._still_lost():
            return self._lost(images, targets)
        try:
            result = run_batch(
                self.info, self.output_names, self._call, images, targets, need_gradients, self.provider, self.path
            )
        except Closed:  # the program is ending: no answer to wait for
            return self._lost(images, targets, "closing")
        except RemoteModelError as exc:
            if not self._answered:  # never reached: the caller says so and stops
                raise
            with self._lock:
                if self._lost_since is None:
                    self._lost_since = self._probed_at = time.monotonic()
                    self.say(f"{exc}; reconnecting every {RETRY_S:.0f} s")
            return self._lost(images, targets)
        self._answered = True
        return result

    def _still_lost(self) -> bool:
        """Whether the server is lost now; starts a probe every RETRY_S and never waits for one."""
        with self._lock:
            if self._lost_since is None:
                return False
            probe = self._probe
            if probe is not None and probe.done():
                self._probe = None
                if probe.exception() is None and probe.result():
                    self.say(f"{self.address.model}: the server is back after "
                             f"{time.monotonic() - self._lost_since:.0f} s")  # fmt: skip
                    self._lost_since = None
                    return False
            waited = time.monotonic() - self._probed_at
            if probe is not None and not probe.done() and waited >= REQUEST_TIMEOUT_S:
                self._probe = None  # no answer in time either: a fresh client tries again
            if self._probe is None and waited >= RETRY_S:
                self._probed_at = time.monotonic()
                self._worker.stop()  # a fresh client: the old one may hang on the old connection
                self._worker = Worker(self._make_client)
                name = self.address.model
                self._probe = self._worker.submit(lambda c: c.is_model_ready(name))
            return True

    def _ask(self, function: Callable[[Any], Any]) -> Any:
        """`function(client)` on the worker, its whole answer within REQUEST_TIMEOUT_S; a worker that missed
        the deadline is replaced."""
        worker = self._worker
        try:
            return wait(worker.submit(function), REQUEST_TIMEOUT_S, self._closing)
        except DeadlineError:
            with self._lock:
                if self._worker is worker:
                    worker.stop()
                    self._worker = Worker(self._make_client)
            raise

    def close(self) -> None:
        """End: a call waiting on the server gives up at once (Ctrl-C and SIGTERM do not wait for a deadline)."""
        self._closing.set()
        self._worker.stop()

    def _lost(
        self, images: np.ndarray, targets: Sequence[Sequence[int]] | np.ndarray, why: str = "server lost: reconnecting"
    ) -> CamResult:
        k = np.asarray(targets).shape[-1]
        return lost_result(self.info, len(images), k, self.provider, why)

    def _call(self, images: np.ndarray, targets: np.ndarray, wanted: list[str]) -> dict[str, np.ndarray]:
        module = self._module
        feeds = contract_feeds(self.info.profile, images, targets)
        inputs = []
        for name, value in feeds.items():
            tensor = module.InferInput(name, list(value.shape), _kserve_type(value.dtype))
            tensor.set_data_from_numpy(np.ascontiguousarray(value))
            inputs.append(tensor)
        outputs = [module.InferRequestedOutput(name) for name in wanted]
        timeout = {"client_timeout": REQUEST_TIMEOUT_S} if self.address.scheme == "grpc" else {}
        try:
            result = self._ask(lambda c: c.infer(self.address.model, inputs, outputs=outputs, **timeout))
        except Closed:
            raise
        except Exception as exc:  # tritonclient's InferenceServerException, the connection lost, no answer
            raise RemoteModelError(f"{self.address.model}: the server did not answer ({_first(exc)})") from exc
        return {name: result.as_numpy(name) for name in wanted}


def _kserve_type(dtype: np.dtype) -> str:
    return {np.dtype(np.uint8): "UINT8", np.dtype(np.int64): "INT64", np.dtype(np.int32): "INT32",
            np.dtype(np.float32): "FP32"}[np.dtype(dtype)]  # fmt: skip


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
