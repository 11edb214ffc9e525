"""Running a contract graph on one batch, for the self-check, the tests and the benchmark."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from realtime import contract


class GraphRunner:
    """One onnxruntime CPU session of a contract graph, run on as many batches as wanted.

    Opening a session is the slow part for a large graph (VGG16's: 2 s); a check that runs several
    batches keeps one runner instead of calling `run_onnx` each time.
    """

    def __init__(self, path: str | Path) -> None:
        import onnxruntime as ort

        from realtime.engines.providers import cpu_session_options

        # the runtime's own session settings (no weight prepacking: VGG16's session opens 1 s sooner)
        self.session = ort.InferenceSession(str(path), cpu_session_options(), providers=["CPUExecutionProvider"])
        self.names = [o.name for o in self.session.get_outputs()]
        meta = self.session.get_modelmeta().custom_metadata_map
        self.profile = meta.get(contract.META_PROFILE, contract.PROFILE_DEFAULT)
        self.takes_targets = contract.INPUT_TARGETS in {i.name for i in self.session.get_inputs()}

    def __call__(self, image: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        """Every output on this batch."""
        from realtime.engines.local import contract_feeds

        feeds = contract_feeds(self.profile, image, np.asarray(targets, np.int64))
        if not self.takes_targets:
            del feeds[contract.INPUT_TARGETS]
        return dict(zip(self.names, self.session.run(self.names, feeds), strict=True))


def run_onnx(path: str | Path, image: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """Every output of a contract graph on one batch, on onnxruntime's CPU provider."""
    return GraphRunner(path)(image, targets)
