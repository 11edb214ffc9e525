"""Running a contract graph on one batch, for the self-check, the tests and the benchmark."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from realtime import contract


def run_onnx(path: str | Path, image: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """Every output of a contract graph on one batch, on onnxruntime's CPU provider."""
    import onnxruntime as ort

    from realtime.engine import contract_feeds
    from realtime.providers import cpu_session_options

    # the runtime's own session settings (no weight prepacking: VGG16's session opens 1 s sooner)
    session = ort.InferenceSession(str(path), cpu_session_options(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    profile = session.get_modelmeta().custom_metadata_map.get(contract.META_PROFILE, contract.PROFILE_DEFAULT)
    feeds = contract_feeds(profile, image, np.asarray(targets, np.int64))
    if contract.INPUT_TARGETS not in {i.name for i in session.get_inputs()}:
        del feeds[contract.INPUT_TARGETS]
    return dict(zip(names, session.run(names, feeds), strict=True))
