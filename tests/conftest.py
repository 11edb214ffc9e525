"""Fixtures shared by the whole suite; helpers that are not fixtures live in tests/helpers/."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# triton (pulled in by torch.onnx.export through dynamo) loads its own LLVM, which segfaults in a process
# that has TensorFlow's; the suite runs torch on the CPU and never compiles kernels, so it stays unimportable
sys.modules.setdefault("triton", None)  # type: ignore[arg-type]

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.helpers.classifiers import export_small  # noqa: E402


@pytest.fixture(scope="session")
def small_models(tmp_path_factory) -> dict[str, Path]:
    """The small seeded classifier exported three ways: {'full': path, 'pooled': path, 'none': path}."""
    folder = tmp_path_factory.mktemp("small_models")
    return {gradients: export_small(folder, gradients) for gradients in ("full", "pooled", "none")}


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    """A tiny ONNX classifier (32x32, 5 classes) for the command lines' refusals."""
    from tests.helpers.classifiers import tiny_classifier

    return tiny_classifier(tmp_path_factory.mktemp("tiny") / "tiny.onnx", ir_version=9)


@pytest.fixture(scope="session")
def resnet18(tmp_path_factory) -> dict[str, Path]:
    """torchvision ResNet18 (seeded random weights): its default, fp16 and trt8 graphs, pooled."""
    from tests.helpers.optional import needs

    needs("torch")
    from tests.helpers.torch_models import resnet18_graphs

    return resnet18_graphs(tmp_path_factory.mktemp("resnet18"))


ALLOW_SKIPS = "GRADCAM_ALLOW_SKIPS"  # set to 1 while working on a machine without every test dependency


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    """A skipped test is a failure that says why, unless GRADCAM_ALLOW_SKIPS=1: the README's test command sets
    everything up (scripts/setup_tests.sh), so a test that cannot run there is a broken set-up, not a pass.
    (GPU tests are deselected, not skipped, on a machine without one: pytest -m gpu runs them.)"""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and not os.environ.get(ALLOW_SKIPS) and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = (f"{item.nodeid} could not run: {reason}. Run scripts/setup_tests.sh (it installs what "
                           f"the suite needs), or set {ALLOW_SKIPS}=1 to allow skips while working")  # fmt: skip
