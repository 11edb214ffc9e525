"""Keras models through the exporter, against TensorFlow's GradientTape."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from realtime import contract
from realtime.export.checks.keras_reference import reference_gradcam
from realtime.export.checks.run import GraphRunner, run_onnx
from realtime.export.checks.selfcheck import SelfCheckError
from realtime.export.ops import OPS
from realtime.export.pipeline import (
    ExportConfig,
    ExportError,
    export,
    export_forward,
    export_model,
    import_keras,
)  # fmt: skip
from tests.helpers import tiny_models
from tests.helpers.second_runtime import assert_same_in_openvino, assert_valid_fp32_graph, near_ties

ort = pytest.importorskip("onnxruntime")


def export_tiny(model, tmp_path: Path, layer: str, gradients: str = "full", preprocessing: str = "raw") -> Path:
    config = ExportConfig(
        gradients=gradients,
        output=tmp_path / f"{layer}_{gradients}.onnx",
        layer=layer,
        preprocessing=preprocessing,
        quiet=True,
    )
    return export_model(model, config).output


def test_grad_cam_by_hand_on_a_paper_model(tmp_path: Path) -> None:
    path = export_tiny(tiny_models.paper_model(), tmp_path, "feat")
    out = run_onnx(path, tiny_models.paper_image(), np.array([[-1, 1]], np.int64))
    # logit0 = 2*1 + 2*2 - 0.5*(0+3+1+0) = 4 ; logit1 = 0.5*4 = 2
    np.testing.assert_allclose(out["logits"][0], [4.0, 2.0], atol=1e-6)
    assert out["classes"].tolist() == [[0, 1]]
    np.testing.assert_allclose(out["weights"][0], [[1.0, -0.5], [0.0, 0.5]], atol=1e-6)
    # class 0: relu(1*R - 0.5*G) = [[1,0],[0,2]] / 2 ; class 1: G / 3
    np.testing.assert_allclose(out["cam"][0, 0], [[0.5, 0.0], [0.0, 1.0]], atol=1e-6)
    np.testing.assert_allclose(out["cam"][0, 1], [[0.0, 1.0], [1 / 3, 0.0]], atol=1e-6)
    assert out["gradients"].shape == (1, 2, 2, 2, 2)
    np.testing.assert_allclose(out["gradients"][0, 0, :, :, 0], [[2, 0], [0, 2]], atol=1e-6)
    meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    assert meta[contract.META_LAYER] == "feat"
    assert meta[contract.META_CONTRACT] == contract.CONTRACT_VERSION


def test_all_zero_map_stays_zero_not_nan(tmp_path: Path) -> None:
    path = export_tiny(tiny_models.paper_model(), tmp_path, "feat")
    out = run_onnx(path, np.zeros((1, 2, 2, 3), np.uint8), np.array([[0, 1]], np.int64))
    assert np.isfinite(out["cam"]).all()
    assert (out["cam"] == 0).all()


def maxpool_routing_model():
    """Identity 1x1 conv -> 2x2 maxpool -> flatten -> dense with all ones."""
    import keras

    inp = keras.Input((4, 4, 3))
    feat = keras.layers.Conv2D(1, 1, use_bias=False, name="feat")(inp)
    pooled = keras.layers.MaxPooling2D(2)(feat)
    out = keras.layers.Dense(1)(keras.layers.Flatten()(pooled))
    model = keras.Model(inp, out)
    kernel = np.zeros((1, 1, 3, 1), np.float32)
    kernel[0, 0, 2, 0] = 1.0  # A = the R channel of the RGB input (raw preprocessing)
    model.get_layer("feat").set_weights([kernel])
    model.layers[-1].set_weights([np.ones((4, 1), np.float32), np.zeros(1, np.float32)])
    return model


def test_maxpool_routes_to_first_maximum_like_tf(tmp_path: Path) -> None:
    r = np.array([[3, 3, 0, 0], [1, 0, 0, 0], [5, 1, 2, 7], [1, 5, 7, 2]], np.uint8)
    image = np.zeros((1, 4, 4, 3), np.uint8)
    image[0, :, :, 0] = r  # BGR: B is channel 0; raw preprocessing flips it to the model's R
    model = maxpool_routing_model()
    path = export_tiny(model, tmp_path, "feat")
    got = run_onnx(path, image, np.array([[0]], np.int64))["gradients"][0, 0, :, :, 0]
    # tied window (3,3): first in row-major order; all-zero window: exactly one position
    expected = np.array([[1, 0, 1, 0], [0, 0, 0, 0], [1, 0, 0, 1], [0, 0, 0, 0]], np.float32)
    np.testing.assert_array_equal(got, expected)
    ref = reference_gradcam(model, "feat", "raw", image, np.array([[0]], np.int64))
    np.testing.assert_array_equal(ref["gradients"][0, 0, :, :, 0], expected)


# relu(R - 2) over 2x2 windows: a positive tie on the top row, all ReLU zeros, a positive tie on the
# bottom row, one maximum; a Dense of ones after the pool sends gradient 1 to each window
RELU_POOL_R = np.array([[5, 5, 0, 1], [1, 0, 2, 2], [1, 4, 3, 9], [6, 6, 2, 3]], np.uint8)


AT_RELU_OUTPUT = np.array([[1, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0]], np.float32)


AT_INPUT = np.array([[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0]], np.float32)  # the zero window: nothing


def relu_pool_image() -> np.ndarray:
    image = np.zeros((1, 4, 4, 3), np.uint8)
    image[0, :, :, 0] = RELU_POOL_R  # BGR's B, the model's channel 2 after raw preprocessing
    return image


def assert_relu_pool_gradients(path: Path) -> dict[str, np.ndarray]:
    """The layer gradient, saliency and guided backpropagation of the relu(R - 2) -> pool -> ones model, by hand."""
    image, targets = relu_pool_image(), np.array([[0]], np.int64)
    got = run_onnx(path, image, targets)
    assert_valid_fp32_graph(path)  # the ranks, pools and Resizes are standard ops TensorRT's parser takes
    assert_same_in_openvino(path, image, targets)  # and break ties alike in OpenVINO
    np.testing.assert_array_equal(got["gradients"][0, 0, :, :, 0], AT_RELU_OUTPUT)
    for name in (contract.OUT_SALIENCY, contract.OUT_GUIDED):  # in the model's order the kernel reads channel 2
        np.testing.assert_array_equal(got[name][0, 0, :, :, 2], AT_INPUT)
        assert not got[name][0, 0, :, :, :2].any()
    return got


def test_max_pool_ties_after_a_relu_by_hand_and_against_tf(tmp_path: Path) -> None:
    """First-maximum routing of ties and all-zero windows, and the ReLU below it, against GradientTape."""
    import keras

    inp = keras.Input((4, 4, 3))
    feat = keras.layers.Conv2D(1, 1, activation="relu", name="feat")(inp)
    model = keras.Model(inp, keras.layers.Dense(1)(keras.layers.Flatten()(keras.layers.MaxPooling2D(2)(feat))))
    kernel = np.zeros((1, 1, 3, 1), np.float32)
    kernel[0, 0, 2, 0] = 1.0
    model.get_layer("feat").set_weights([kernel, np.array([-2.0], np.float32)])
    model.layers[-1].set_weights([np.ones((4, 1), np.float32), np.zeros(1, np.float32)])
    config = ExportConfig(
        output=tmp_path / "relu_pool.onnx", layer="feat", input_gradients="both", preprocessing="raw", quiet=True
    )
    assert_relu_pool_gradients(export_model(model, config).output)
    ref = reference_gradcam(model, "feat", "raw", relu_pool_image(), np.array([[0]], np.int64))
    np.testing.assert_array_equal(ref["gradients"][0, 0, :, :, 0], AT_RELU_OUTPUT)


def test_a_relu_only_a_max_pool_reads_is_taken_at_the_pool_output(tmp_path: Path) -> None:
    """Conv -> Relu -> MaxPool with nothing between (tf2onnx puts a Transpose there; torch exports do not):
    guided backpropagation takes the ReLU at the pool's 4x smaller output, saliency (whose layer wants the
    ReLU's output) at the ReLU itself, and both give the hand-computed gradients."""
    from onnx import TensorProto, helper, numpy_helper

    kernel = np.zeros((1, 3, 1, 1), np.float32)
    kernel[0, 2] = 1.0
    nodes = [
        helper.make_node("Conv", ["x", "w", "bias"], ["conv"]),
        helper.make_node("Relu", ["conv"], ["feat"]),
        helper.make_node("MaxPool", ["feat"], ["pooled"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "ones", "zero"], ["logits"]),
    ]
    inits = [
        numpy_helper.from_array(kernel, "w"),
        numpy_helper.from_array(np.array([-2.0], np.float32), "bias"),
        numpy_helper.from_array(np.ones((4, 1), np.float32), "ones"),
        numpy_helper.from_array(np.zeros(1, np.float32), "zero"),
    ]
    graph = helper.make_graph(
        nodes, "relu_pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1])], inits,
    )  # fmt: skip
    source = tmp_path / "relu_pool_source.onnx"
    source.write_bytes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()
    )
    config = ExportConfig(
        onnx=source, output=tmp_path / "g.onnx", layer="feat", input_gradients="both", preprocessing="raw", quiet=True
    )
    path = export(config).output
    assert_relu_pool_gradients(path)
    import onnx

    written = onnx.load(str(path))
    made_by = {out: node.op_type for node in written.graph.node for out in node.output}
    opened_at = sorted(made_by[n.input[0]] for n in written.graph.node if n.op_type == "Greater")
    assert opened_at == ["MaxPool", "Relu"], opened_at  # guided pass: at the pool; saliency pass: at the ReLU


def test_guided_with_pooled_weights_matches_tf_and_the_full_graph(tmp_path: Path) -> None:
    """--gradients pooled --input-gradients guided: Grad-CAM's weights through the pooled kernel, and the same
    guided backpropagation as the full graph, without the full gradients (Guided Grad-CAM needs none)."""
    model = tiny_models.pooled_model()
    image = np.random.default_rng(5).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    targets = np.array([[-1, 3], [2, -1]], np.int64)
    got = {}
    for gradients in ("pooled", "full"):
        config = ExportConfig(
            gradients=gradients, output=tmp_path / f"{gradients}.onnx", layer="last_conv",
            input_gradients="guided", preprocessing="caffe", quiet=True,
        )  # fmt: skip
        got[gradients] = run_onnx(export_model(model, config).output, image, targets)
    ref = reference_gradcam(model, "last_conv", "caffe", image, targets)
    np.testing.assert_allclose(got["pooled"]["weights"], ref["weights"], atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(got["pooled"]["cam"], ref["cam"], atol=1e-4)
    np.testing.assert_allclose(got["pooled"]["guided"], got["full"]["guided"], rtol=1e-5, atol=1e-7)
    assert np.abs(got["pooled"]["guided"]).max() > 0
    assert "gradients" not in got["pooled"] and "gradients" in got["full"]


def test_saliency_and_several_layers_still_need_full_gradients(tmp_path: Path) -> None:
    for extra in ({"input_gradients": "saliency"}, {"more_layers": ("a",)}):
        config = ExportConfig(gradients="pooled", output=tmp_path / "x.onnx", layer="b", quiet=True, **extra)
        with pytest.raises(ExportError, match="--gradients full"):
            export(config)
    with pytest.raises(ExportError, match="full or pooled"):
        export(ExportConfig(gradients="none", output=tmp_path / "x.onnx", input_gradients="guided", quiet=True))


@pytest.mark.parametrize("make", [tiny_models.pooled_model, tiny_models.gap_model])
@pytest.mark.parametrize("gradients", ["full", "pooled"])
def test_small_heads_match_gradient_tape(make, gradients: str, tmp_path: Path) -> None:
    model = make()
    path = export_tiny(model, tmp_path, "last_conv", gradients, preprocessing="caffe")
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    targets = np.array([[-1, 2, -1], [1, -1, -1], [-1, -1, 0]], np.int64)
    got = run_onnx(path, image, targets)
    ref = reference_gradcam(model, "last_conv", "caffe", image, targets)
    assert got["classes"].tolist() == ref["classes"].tolist()
    np.testing.assert_allclose(got["weights"], ref["weights"], atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(got["cam"], ref["cam"], atol=1e-4)
    assert ("gradients" in got) == (gradients == "full")


def test_global_max_pool_head(tmp_path: Path) -> None:
    model = tiny_models.gap_model(pool="max")
    path = export_tiny(model, tmp_path, "last_conv", "full", preprocessing="caffe")
    image = np.random.default_rng(4).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    targets = np.array([[-1], [3]], np.int64)
    got, ref = run_onnx(path, image, targets), reference_gradcam(model, "last_conv", "caffe", image, targets)
    np.testing.assert_allclose(got["gradients"], ref["gradients"], atol=1e-5, rtol=1e-4)


def test_unsupported_layer_is_named(tmp_path: Path) -> None:
    import keras

    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inp)
    x = keras.layers.Conv2D(4, 3, activation="elu", name="conv_after")(x)  # ELU has no derivative rule
    x = keras.layers.Dense(2)(keras.layers.Flatten()(x))
    with pytest.raises(ExportError, match=r"conv_after.*\(Elu\).*Keras layer after that node"):
        export_tiny(keras.Model(inp, x), tmp_path, "conv")


def test_missing_layer_lists_the_layers(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="feat"):
        export_tiny(tiny_models.paper_model(), tmp_path, "nope")


def _gemm_off_by_a_percent(ctx, node, g, carried):  # type: ignore[no-untyped-def]
    grads = GEMM_RULE(ctx, node, g, carried)
    return tuple(None if grad is None else replace(grad, name=ctx.b.scale(grad.name, 1.01)) for grad in grads)


GEMM_RULE = OPS["MatMul"].rule  # tf2onnx writes Dense as MatMul + Add


MUTANTS = {  # op type -> a wrong rule for it
    "Relu": OPS["Identity"].rule,  # forgets its mask
    "MatMul": _gemm_off_by_a_percent,  # every product 1% too large
}


@pytest.mark.parametrize("mutant", list(MUTANTS))
@pytest.mark.parametrize("gradients", ["full", "pooled"])
def test_a_wrong_backward_is_caught_and_nothing_is_written(
    gradients: str, mutant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mutated derivative rule: the self-check's finite differences of the head must notice."""
    monkeypatch.setitem(OPS, mutant, replace(OPS[mutant], rule=MUTANTS[mutant]))
    with pytest.raises(SelfCheckError, match="finite differences"):
        export_tiny(tiny_models.pooled_model(), tmp_path, "last_conv", gradients)
    assert list(tmp_path.iterdir()) == []


def test_offline_imagenet_names_weights_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import keras

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: Name or service not known")

    monkeypatch.setattr(keras.applications, "VGG16", offline)
    with pytest.raises(ExportError, match="--weights PATH"):
        export(ExportConfig(weights="imagenet", output=tmp_path / "x.onnx", quiet=True))


def test_missing_weights_file(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no such file"):
        export(ExportConfig(weights=str(tmp_path / "none.h5"), quiet=True))


@pytest.fixture(scope="module")
def vgg16():
    import keras

    keras.utils.set_random_seed(0)
    return keras.applications.VGG16(weights=None, classifier_activation=None)


@pytest.fixture(scope="module")
def vgg16_exports(vgg16, tmp_path_factory):
    folder = tmp_path_factory.mktemp("vgg16")
    forward = import_keras(vgg16, ExportConfig())  # one tf2onnx conversion serves both graphs
    paths = {}
    for gradients in ("full", "pooled"):
        config = ExportConfig(gradients=gradients, output=folder / f"vgg16_{gradients}.onnx", quiet=True)
        paths[gradients] = export_forward(forward.copy(), config).output
    return paths


@pytest.fixture(scope="module")
def vgg16_runners(vgg16_exports):
    """A session per graph for the tests that run several batches (opening one takes 2 s)."""
    return {gradients: GraphRunner(path) for gradients, path in vgg16_exports.items()}


def window_gap(activations: np.ndarray) -> np.ndarray:
    """Per 2x2 window: the gap between the largest and second largest value, [N,7,7,C]."""
    n, h, w, c = activations.shape
    win = activations.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 5, 2, 4).reshape(n, h // 2, w // 2, c, 4)
    top = np.sort(win, axis=-1)
    return top[..., -1] - top[..., -2]


@pytest.mark.slow
@pytest.mark.parametrize("batch,targets_row", [(1, [-1]), (1, [-1, 386, -1]), (3, [145]), (3, [-1, -1, 7])])
def test_vgg16_matches_gradient_tape(vgg16, vgg16_runners, batch: int, targets_row: list[int]) -> None:
    rng = np.random.default_rng(batch * 10 + len(targets_row))
    image = rng.integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8)
    targets = np.array([targets_row] * batch, np.int64)
    ref = reference_gradcam(vgg16, "block5_conv3", "caffe", image, targets)
    for gradients, run_graph in vgg16_runners.items():
        got = run_graph(image, targets)
        assert got["classes"].tolist() == ref["classes"].tolist(), gradients
        logits_rel = np.abs(got["logits"] - ref["logits"]).max() / np.abs(ref["logits"]).max()
        assert logits_rel <= 1e-4, gradients
        assert np.abs(got["weights"] - ref["weights"]).max() <= 1e-4
        weights_rel = np.abs(got["weights"] - ref["weights"]).max() / np.abs(ref["weights"]).max()
        assert weights_rel <= 1e-4, (gradients, weights_rel)
        assert np.abs(got["cam"] - ref["cam"]).max() <= 1e-4, gradients
        np.testing.assert_allclose(got["probabilities"].sum(axis=1), 1.0, rtol=1e-5)
        if gradients == "full":
            diff = np.abs(got["gradients"] - ref["gradients"]).max(axis=1)  # over targets, [N,14,14,C]
            scale = np.abs(ref["gradients"]).max()
            off = diff > 1e-4 * scale
            if off.any():
                # only windows whose top two values are within float noise may route differently
                gap = window_gap(ref["activations"])
                n, i, j, c = np.nonzero(off)
                assert (gap[n, i // 2, j // 2, c] <= 1e-3 * np.abs(ref["activations"]).max()).all()


@pytest.mark.slow
def test_vgg16_graphs_are_valid_and_agree_in_openvino(vgg16_exports, vgg16_runners) -> None:
    """OpenVINO once computed VGG16's channel weights wrong here (a weight shared by a forward MatMul and
    a backward Gemm with transB); the backward now reads each weight as Gemm's first operand."""
    image = np.random.default_rng(21).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    targets = np.array([[-1, 3], [2, -1]], np.int64)
    for gradients, path in vgg16_exports.items():
        assert_valid_fp32_graph(path)
        ours = vgg16_runners[gradients](image, targets)
        assert_same_in_openvino(path, image, targets, near_ties(ours["activations"]), ours=ours)


@pytest.mark.parametrize("gradients", ["full", "pooled", "none"])
def test_keras_graphs_are_valid_and_agree_in_openvino(small_models, gradients: str) -> None:
    path = small_models[gradients]
    assert_valid_fp32_graph(path)
    image = np.random.default_rng(5).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    mask = near_ties(run_onnx(path, image, np.array([[-1]] * 3, np.int64))["activations"])
    assert_same_in_openvino(path, image, np.array([[-1, 2], [1, -1], [-1, -1]], np.int64), mask)


@pytest.mark.parametrize("name", ["biased", "fair"])
def test_bundled_demo_models_are_valid_and_agree_in_openvino(name: str) -> None:
    from realtime.demo.models import demo_model_paths

    path = demo_model_paths()[name]
    assert_valid_fp32_graph(path)
    image = np.random.default_rng(6).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    mask = near_ties(run_onnx(path, image, np.array([[-1]] * 2, np.int64))["activations"])
    assert_same_in_openvino(path, image, np.array([[-1, 1], [0, -1]], np.int64), mask)


@pytest.mark.slow
def test_pooled_graph_is_smaller_in_work_not_in_answer(vgg16_exports) -> None:
    import onnx

    full = onnx.load(str(vgg16_exports["full"]), load_external_data=False)
    pooled = onnx.load(str(vgg16_exports["pooled"]), load_external_data=False)
    assert "gradients" in [o.name for o in full.graph.output]
    assert "gradients" not in [o.name for o in pooled.graph.output]
    fc1 = next(i.name for i in pooled.graph.initializer if tuple(i.dims) == (25088, 4096))
    readers = [n.op_type for n in pooled.graph.node if fc1 in n.input]
    assert len(readers) == 1, readers  # the pooled backward never reads fc1 again
    fc1_full = next(i.name for i in full.graph.initializer if tuple(i.dims) == (25088, 4096))
    assert sorted(n.op_type for n in full.graph.node if fc1_full in n.input) == ["Gemm", "MatMul"]
    assert not any(tuple(i.dims) == (4096, 25088) for i in full.graph.initializer)  # no transposed copy


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,layer,preprocessing",
    [
        ("MobileNetV2", "out_relu", "tf"),
        ("EfficientNetB0", "top_activation", "raw"),
        ("ResNet50", "conv5_block3_out", "caffe"),
    ],
)
def test_keras_application_heads_export_and_match(name: str, layer: str, preprocessing: str, tmp_path: Path) -> None:
    """The GAP/Dropout/Dense heads of the other Keras applications, BatchNorm bodies included."""
    import keras

    keras.utils.set_random_seed(1)
    build = getattr(keras.applications, name)
    model = build(weights=None, input_shape=(64, 64, 3), classes=7)
    path = export_tiny(model, tmp_path, layer, "full", preprocessing)  # the exporter's own self-check ran too
    image = np.random.default_rng(5).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    targets = np.array([[-1, 3], [6, -1]], np.int64)
    got, ref = run_onnx(path, image, targets), reference_gradcam(model, layer, preprocessing, image, targets)
    assert got["classes"].tolist() == ref["classes"].tolist()
    np.testing.assert_allclose(got["cam"], ref["cam"], atol=1e-4)
    scale = np.abs(ref["weights"]).max()
    assert np.abs(got["weights"] - ref["weights"]).max() <= 1e-4 * max(scale, 1e-12) + 1e-7
