"""The GPU providers' per-call cost, where a GPU works (CUDA, TensorRT), with IO binding."""

from __future__ import annotations

from typing import Any

import numpy as np

from scripts.bench.timing import alternate


def gpu_model_cost(paths: dict[str, str], size: int, rounds: int) -> dict[str, Any]:
    """The batch-1 table on the GPU providers: IO binding, fp32 and TensorRT fp16. Runs only where a GPU works."""
    import onnxruntime as ort

    from realtime.engines.providers import CPU, CUDA, TRT, EngineOptions, provider_options

    image = np.random.default_rng(0).integers(0, 256, (1, size, size, 3), dtype=np.uint8)
    targets = np.full((1, 1), -1, np.int64)
    report: dict[str, Any] = {}
    for label, chain, fp16 in (
        ("cuda", (CUDA,), False),
        ("tensorrt", (TRT, CUDA), False),
        ("tensorrt-fp16", (TRT, CUDA), True),
    ):
        options = EngineOptions(fp16=fp16)
        providers = [(p, provider_options(p, options)) for p in chain] + [CPU]
        runs = {}
        for name, path in paths.items():
            session = ort.InferenceSession(path, providers=providers)
            binding = session.io_binding()
            binding.bind_cpu_input("image", image)
            binding.bind_cpu_input("targets", targets)
            for out in session.get_outputs():  # only the small outputs come back to the host
                binding.bind_output(out.name, "cuda" if out.name in ("gradients", "activations") else "cpu")
            runs[name] = lambda s=session, b=binding: s.run_with_iobinding(b)
            report.setdefault(label, {})[f"{name}_provider"] = session.get_providers()[0]
        ms = alternate(runs, rounds, warmup=5)
        report[label].update({n: {"ms": v, "ratio": v / ms["none"]} for n, v in ms.items()})
    return report


def gpu_available() -> str | None:
    from realtime.demo.models import demo_model_paths
    from realtime.engines.local import working_gpu_provider

    return working_gpu_provider(demo_model_paths()["fair"])
