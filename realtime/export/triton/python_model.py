"""model.py of a Triton repository's Python-backend variant: the same graph, run by onnxruntime inside the server.

Triton's Python backend loads this file (as NAME/1/model.py) where no onnxruntime backend is built in:
pytriton's `tritonserver` ships the Python backend only. The graph beside it is the one the
onnxruntime variant serves, with the same inputs, outputs and parameters in config.pbtxt. It is not
imported by this package; the server's own Python runs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        folder = Path(args["model_repository"]) / args["model_version"]
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def execute(self, requests: list[Any]) -> list[Any]:
        """One onnxruntime call per request, asked outputs only. Triton's dynamic batcher hands several
        requests to one execute(), but they are not stacked into one batch here."""
        responses = []
        for request in requests:
            feeds = {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.inputs}
            wanted = list(request.requested_output_names()) or self.outputs
            try:
                values = self.session.run(wanted, feeds)
            except Exception as exc:  # onnxruntime's own error types: said to the client, the server goes on
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc).splitlines()[0])))
                continue
            tensors = [pb_utils.Tensor(name, np.ascontiguousarray(v)) for name, v in zip(wanted, values, strict=True)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
