"""A KServe v2 client double that answers from a local graph, with faults to order: tied to the thread that
made it (as tritonclient's gevent HTTP client is), slow, silent, or sending NaN or too little.

It stands in for `tritonclient.http` where a test needs a fault a real server will not produce on demand;
the real server's tests are in tests/engines/test_remote.py."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ONNX_TO_KSERVE = {"tensor(uint8)": "UINT8", "tensor(int64)": "INT64", "tensor(float)": "FP32", "tensor(int32)": "INT32"}


@dataclass
class Faults:
    """What the server does wrong now (tests change it while an engine runs)."""

    thread_bound: bool = True  # a call from another thread than the client's maker raises, as gevent does
    delay_s: float = 0.0  # each answer takes this long (a slow or a silent server)
    nan: bool = False  # the logits come back NaN
    missing: str | None = None  # this output is left out of the answer
    calls: list[str] = field(default_factory=list)  # which thread made each call


class InferInput:
    def __init__(self, name: str, shape: list[int], datatype: str) -> None:
        self.name, self.shape, self.datatype, self.value = name, shape, datatype, None

    def set_data_from_numpy(self, value: np.ndarray) -> None:
        self.value = value


class InferRequestedOutput:
    def __init__(self, name: str) -> None:
        self.name = name


class Answer:
    def __init__(self, values: dict[str, np.ndarray]) -> None:
        self.values = values

    def as_numpy(self, name: str) -> np.ndarray | None:
        return self.values.get(name)


class FakeModule:
    """What RemoteEngine uses of `tritonclient.http`, answering from `graph`."""

    InferInput = InferInput
    InferRequestedOutput = InferRequestedOutput

    def __init__(self, graph: Path, faults: Faults) -> None:
        import onnx
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
        model = onnx.load(str(graph), load_external_data=False)
        self.metadata = {p.key: p.value for p in model.metadata_props}
        self.faults = faults

    def InferenceServerClient(self, host: str, **options: Any) -> Client:
        return Client(self, threading.get_ident())


class Client:
    def __init__(self, module: FakeModule, owner: int) -> None:
        self.module, self.owner = module, owner

    def _check_thread(self) -> None:
        self.module.faults.calls.append(threading.current_thread().name)
        if self.module.faults.thread_bound and threading.get_ident() != self.owner:
            raise RuntimeError("Cannot switch to a different thread")  # gevent's words

    def get_model_metadata(self, name: str, **options: Any) -> dict[str, Any]:
        self._check_thread()

        def values(entries: list) -> list[dict[str, Any]]:
            return [{"name": e.name, "datatype": ONNX_TO_KSERVE[e.type],
                     "shape": [d if isinstance(d, int) else -1 for d in e.shape]} for e in entries]  # fmt: skip

        session = self.module.session
        return {"inputs": values(session.get_inputs()), "outputs": values(session.get_outputs())}

    def get_model_config(self, name: str, **options: Any) -> dict[str, Any]:
        self._check_thread()
        return {"parameters": {k: {"string_value": v} for k, v in self.module.metadata.items()}}

    def is_model_ready(self, name: str) -> bool:
        self._check_thread()
        time.sleep(self.module.faults.delay_s)
        return True

    def infer(self, name: str, inputs: list[InferInput], outputs: list[InferRequestedOutput], **options: Any) -> Answer:
        self._check_thread()
        faults = self.module.faults
        time.sleep(faults.delay_s)
        wanted = [o.name for o in outputs]
        values = dict(zip(wanted, self.module.session.run(wanted, {i.name: i.value for i in inputs}), strict=True))
        if faults.nan:
            values["logits"] = np.full_like(values["logits"], np.nan)
        if faults.missing:
            values.pop(faults.missing, None)
        return Answer(values)
