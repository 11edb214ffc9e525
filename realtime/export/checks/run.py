"""Running a contract graph on one batch, for the self-check, the tests and the benchmark."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from realtime import contract


def run_onnx(path: str | Path, image: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """Every output of a contract graph on one batch, on onnxruntime's CPU provider."""
    import onnxruntime as ort

    from realtime.providers import cpu_session_options

    # the runtime's own session settings (no weight prepacking: VGG16's session opens 1 s sooner)
    session = ort.InferenceSession(str(path), cpu_session_options(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    feeds: dict[str, np.ndarray] = {contract.INPUT_IMAGE: image}
    if contract.INPUT_TARGETS in {i.name for i in session.get_inputs()}:
        feeds[contract.INPUT_TARGETS] = targets
    return dict(zip(names, session.run(names, feeds), strict=True))
