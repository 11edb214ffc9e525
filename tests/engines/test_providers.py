"""Execution providers: the chain, the fallback, and what the user is told."""

from __future__ import annotations

import numpy as np
import pytest

from realtime.engines.local import LocalEngine
from realtime.engines.providers import EngineOptions, describe_providers, gpu_present

ort = pytest.importorskip("onnxruntime")


def test_unknown_providers_value_is_named(small_models) -> None:
    with pytest.raises(ValueError, match="vulkan"):
        LocalEngine(small_models["full"], EngineOptions(providers="vulkan"))


def test_auto_providers_fall_back_to_cpu_with_one_line(small_models, capfd) -> None:
    engine = LocalEngine(small_models["pooled"], EngineOptions(providers="auto", warmup=0))
    err = capfd.readouterr()
    if engine.provider == "CPUExecutionProvider" and "CUDAExecutionProvider" in ort.get_available_providers():
        assert "EP Error" not in err.out + err.err
        assert ("CUDA 13" in engine.notice) == gpu_present()  # the advice only where a GPU failed to load
    assert engine.notice.startswith("providers=auto")


def test_the_cuda_advice_is_for_those_who_asked_or_have_a_gpu() -> None:
    cpu, cuda = "CPUExecutionProvider", "CUDAExecutionProvider"
    assert describe_providers("auto", cuda, cpu, gpu_here=False) == "providers=auto: no GPU here, running on " + cpu
    assert "CUDA 13" in describe_providers("auto", cuda, cpu, gpu_here=True)
    assert "CUDA 13" in describe_providers("cuda", cuda, cpu, gpu_here=False)


def _cuda_works() -> bool:
    from realtime.demo.models import demo_model_paths
    from realtime.engines.local import working_gpu_provider

    return working_gpu_provider(demo_model_paths()["fair"]) is not None


def _demo_frames(n: int) -> np.ndarray:
    from realtime.sources.scenes import dataset

    return np.stack([scene.image for scene in dataset(n, seed=5, biased=False)])


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda_works(), reason="needs a CUDA 13 / cuDNN 9 GPU")
def test_cuda_io_binding_matches_cpu() -> None:
    from realtime.demo.models import demo_model_paths

    model = demo_model_paths()["fair"]
    images = _demo_frames(4)
    cpu = LocalEngine(model, EngineOptions(providers="cpu")).run(images, [[-1, -1]])
    gpu_engine = LocalEngine(model, EngineOptions(providers="cuda"))
    assert gpu_engine.provider == "CUDAExecutionProvider"
    gpu = gpu_engine.run(images, [[-1, -1]])
    np.testing.assert_array_equal(gpu.classes, cpu.classes)
    np.testing.assert_allclose(gpu.logits, cpu.logits, rtol=1e-2, atol=1e-2)  # TF32 convolutions on the GPU
    np.testing.assert_allclose(gpu.cam, cpu.cam, atol=2e-2)
    assert gpu.gradients is not None and gpu.gradients.shape == cpu.gradients.shape
    lean = gpu_engine.run(images, [[-1]], need_gradients=False)  # gradients stay on the device
    assert lean.gradients is None
    np.testing.assert_allclose(lean.cam[:, 0], gpu.cam[:, 0], atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda_works(), reason="needs a CUDA 13 / cuDNN 9 GPU")
def test_auto_and_tensorrt_stay_on_the_gpu() -> None:
    """A missing TensorRT must fall back to CUDA, not all the way to the CPU."""
    from realtime.demo.models import demo_model_paths

    model = demo_model_paths()["fair"]
    for providers in ("auto", "tensorrt"):
        engine = LocalEngine(model, EngineOptions(providers=providers, warmup=1))
        assert engine.provider in ("TensorrtExecutionProvider", "CUDAExecutionProvider"), engine.notice


def test_provider_notice_says_why_not_where_asked() -> None:
    from realtime.engines.providers import CPU, CUDA, TRT, describe_providers, provider_options

    assert describe_providers("cpu", CPU, CPU) == "providers=cpu: running on CPUExecutionProvider"
    assert "CUDA 13" in describe_providers("auto", TRT, CPU, gpu_here=True)
    # seen on an H200 with onnxruntime-gpu 1.31 and no TensorRT: the chain falls back to CUDA, not the CPU
    assert "TensorRT did not load" in describe_providers("tensorrt", TRT, CUDA)
    assert "fp32 graph runs faster" in describe_providers("cuda", CUDA, CUDA, "int8-forward")
    assert "fp32 graph" not in describe_providers("cpu", CPU, CPU, "int8-forward")
    assert provider_options(CUDA, EngineOptions())["use_tf32"] == "1"
    assert provider_options(CUDA, EngineOptions(tf32=False))["use_tf32"] == "0"
