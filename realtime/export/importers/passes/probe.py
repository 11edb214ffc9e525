"""One run of an imported graph that answers the importer's run-time questions together.

Folding shape arithmetic needs the shape-only tensors at batch 1 and 2; freeing a baked-in batch
needs to know whether batch 2 gives each image the logits it gets alone. Both come from one
onnxruntime session: on a VGG16 a session costs seconds (its half-gigabyte of weights serialised
and loaded), so it is made once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from realtime.export.graph.session import cpu_session
from realtime.export.importers import ModelImportError
from realtime.export.messages import first_line


@dataclass(frozen=True)
class Probe:
    """What one run told: tensor values at batch 1 and 2, and whether the batch axis is really free."""

    one: dict[str, np.ndarray]  # the wanted tensors for one image
    two: dict[str, np.ndarray] | None  # the same at batch 2; None when batch 2 does not run
    batch_free: bool  # batch 2 runs and gives each image the logits it gets alone


def probe(model: onnx.ModelProto, input_name: str, input_dims: Sequence[int], names: Sequence[str]) -> Probe:
    """Run the graph on two random images, alone and as a batch, reading `names` and the first output.

    A graph that does not run on one image is an import error, not a batch question."""
    logits = model.graph.output[0].name
    wanted = [logits, *(n for n in names if n != logits)]
    x = np.random.default_rng(5).random((2, *input_dims), dtype=np.float32)
    try:
        session = cpu_session(model, optimize=False, outputs=wanted)
        alone = [dict(zip(wanted, session.run(wanted, {input_name: x[i : i + 1]}), strict=True)) for i in range(2)]
    except Exception as exc:  # onnxruntime's own error types
        raise ModelImportError(
            f"the model does not run in onnxruntime on one image ({first_line(exc)}); check it with onnxruntime alone"
        ) from exc
    try:
        both = dict(zip(wanted, session.run(wanted, {input_name: x}), strict=True))
    except Exception:  # onnxruntime's own error types: batch 2 does not run
        return Probe(alone[0], None, False)
    single = np.concatenate([a[logits] for a in alone])
    got = both[logits]
    free = got.shape == single.shape and bool(
        np.allclose(got, single, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(single).max()))
    )
    return Probe(alone[0], both, free)
