"""The VGG16 (or --quick: demo-architecture) graphs: export cost, per-call cost, memory, the weight-read
floor of an exact backward, int8, and the seed's GradientTape method."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from scripts.bench.timing import alternate, child

GRAPHS = ("none", "pooled", "full")


@dataclass(frozen=True)
class Subject:
    """What is benchmarked: VGG16 at full size, or the small demo architecture for --quick."""

    name: str
    input_size: int
    export_args: tuple[str, ...]
    keras_model: Path | None = None  # the seed's method runs on this Keras model (None: VGG16 itself)
    layer: str = "block5_conv3"


VGG16 = Subject("vgg16", 224, ("--weights", "random", "--seed", "0"))


def small_subject(folder: Path) -> Subject:
    """The demo architecture with seeded weights, exported as ONNX once here: its graphs are then made
    with --onnx, so the quick run does not start TensorFlow in each of its six export processes."""
    from realtime.export.importers.keras import keras_forward
    from scripts.train_demo_models import LAYER, build_model

    path = folder / "small.keras"
    model = build_model(0)
    model.save(path)
    forward = keras_forward(model, LAYER, "small").model
    logits = forward.graph.output[0]
    del forward.graph.output[:]
    forward.graph.output.append(logits)  # the layer stays a named tensor; the file is a plain classifier
    onnx.save(forward, str(folder / "small.onnx"))
    args = ("--onnx", str(folder / "small.onnx"), "--layer", LAYER, "--preprocess", "tf")
    return Subject("demo-architecture", 224, args, keras_model=path, layer=LAYER)


def export_all(subject: Subject, folder: Path) -> dict[str, Any]:
    """Export the forward-only, pooled and full graphs; time and peak RSS of each, in its own process."""
    report = {}
    for gradients in GRAPHS:
        out = folder / f"{subject.name}_{gradients}.onnx"
        args = (*subject.export_args, "--gradients", gradients, "--output", str(out), "--quiet")
        report[gradients] = {"path": str(out), **child("export", *args)}
    return report


INT8_VARIANTS = {  # name: (graph, --int8-scope); pooled_forward is the alternative the default is chosen over
    "pooled": ("pooled", "all"),
    "full": ("full", "all"),
    "pooled_forward": ("pooled", "forward"),
}


def export_int8(subject: Subject, folder: Path) -> dict[str, Any]:
    """The pooled and full graphs quantized to int8 (demo calibration), timed and measured in their own process."""
    report = {}
    for name, (gradients, scope) in INT8_VARIANTS.items():
        out = folder / f"{subject.name}_{name}_int8.onnx"
        args = (*subject.export_args, "--gradients", gradients, "--int8", "--int8-scope", scope)
        args = (*args, "--output", str(out), "--quiet")
        report[name] = {"path": str(out), "scope": scope, **child("export", *args)}
    return report


def int8_cost(fp32: dict[str, str], int8: dict[str, str], size: int, rounds: int) -> dict[str, Any]:
    """int8 against fp32, batch 1, in alternation, each with the engine's own session settings."""
    from realtime.engines.local import LocalEngine
    from realtime.engines.providers import EngineOptions

    image = np.random.default_rng(0).integers(0, 256, (1, size, size, 3), dtype=np.uint8)
    engines = {
        f"{g}_{p}": LocalEngine(path, EngineOptions(providers="cpu", warmup=1))
        for p, paths in (("fp32", fp32), ("int8", int8))
        for g, path in paths.items()
    }
    ms = alternate({n: (lambda e=e: e.run(image, [[-1]], need_gradients=False)) for n, e in engines.items()}, rounds)
    speedups = {
        f"{name}_speedup": ms[f"{graph}_fp32"] / ms[f"{name}_int8"] for name, (graph, _) in INT8_VARIANTS.items()
    }
    return {**{n: {"ms": v} for n, v in ms.items()}, **speedups}


def sessions(paths: dict[str, str]) -> dict[str, Any]:
    import onnxruntime as ort

    from realtime.engines.providers import cpu_session_options

    return {
        name: ort.InferenceSession(path, cpu_session_options(), providers=["CPUExecutionProvider"])
        for name, path in paths.items()
    }


def model_cost(paths: dict[str, str], size: int, batches: Sequence[int], ks: Sequence[int], rounds: int) -> dict:
    """ms per call of each graph and its ratio to the forward-only graph."""
    sess = sessions(paths)
    rng = np.random.default_rng(0)
    report: dict[str, Any] = {}
    for batch in batches:
        image = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
        targets = np.full((batch, 1), -1, np.int64)
        feeds = {"image": image, "targets": targets}
        ms = alternate({n: (lambda s=s, f=feeds: s.run(None, f)) for n, s in sess.items()}, rounds)
        report[f"batch{batch}"] = {n: {"ms": v, "ratio": v / ms["none"]} for n, v in ms.items()}
    image = rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8)
    scale = {}
    classes = int(sess["none"].get_outputs()[0].shape[-1])
    for k in (k for k in ks if k <= classes):
        feeds = {"image": image, "targets": np.full((1, k), -1, np.int64)}
        runs = {n: (lambda s=s, f=feeds: s.run(None, f)) for n, s in sess.items()}
        scale[f"K={k}"] = alternate(runs, max(3, rounds // 2))
    report["targets"] = scale
    return report


def _product_graph(weights: Sequence[tuple[int, int]], rng: np.random.Generator) -> tuple[Any, dict[str, Any]]:
    """An ONNX graph of Gemm(g, W, transB=1) products with random weights of these shapes, and its feeds;
    with no weights, Identity copies of the same feeds (what a call costs with nothing to read)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, inputs, outputs, inits, feeds = [], [], [], [], {}
    for i, (rows, cols) in enumerate(weights):  # y = g @ W.T, as the backward writes it
        nodes.append(helper.make_node("Gemm", [f"g{i}", f"w{i}"], [f"y{i}"], transB=1))
        inputs.append(helper.make_tensor_value_info(f"g{i}", TensorProto.FLOAT, [1, cols]))
        outputs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, [1, rows]))
        inits.append(numpy_helper.from_array(rng.normal(0, 0.01, (rows, cols)).astype(np.float32), f"w{i}"))
        feeds[f"g{i}"] = rng.normal(0, 1, (1, cols)).astype(np.float32)
    model = helper.make_model(
        helper.make_graph(nodes, "products", inputs, outputs, inits), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 9
    return model, feeds


def _empty_graph(feeds: dict[str, Any]) -> Any:
    from onnx import TensorProto, helper

    names = sorted(feeds)
    values = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(feeds[n].shape)) for n in names]
    outs = [helper.make_tensor_value_info(f"{n}_out", TensorProto.FLOAT, list(feeds[n].shape)) for n in names]
    nodes = [helper.make_node("Identity", [n], [f"{n}_out"]) for n in names]
    model = helper.make_model(
        helper.make_graph(nodes, "empty", values, outs), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 9
    return model


def backward_weights(path: str) -> list[tuple[int, int]]:
    """The shapes of the weights a graph's backward multiplies by: Gemm nodes that take a weight first
    (a forward Gemm takes its weight second)."""
    import onnx

    model = onnx.load(path)
    dims = {i.name: (int(i.dims[0]), int(i.dims[1])) for i in model.graph.initializer if len(i.dims) == 2}
    return [dims[n.input[0]] for n in model.graph.node if n.op_type == "Gemm" and n.input[0] in dims]


def weight_read_floor(
    forward: Callable[[], object], weights: dict[str, list[tuple[int, int]]], rounds: int
) -> dict[str, Any]:
    """What an exact backward cannot avoid here: one more read of every weight it multiplies by.

    The backward's products are rebuilt alone with weights of the same shapes and timed in
    alternation with the forward pass, less the cost of a call that reads nothing. Those reads are
    memory-bound: unless the weights are still in cache (fc2's 64 MB can be, on a large L3; fc1's
    411 MB was not, even read backwards right after the forward), no exact fp32 backward is cheaper
    than 1 + floor / forward.
    """
    import onnxruntime as ort

    from realtime.engines.providers import cpu_session_options

    def session(model: Any) -> Any:
        return ort.InferenceSession(
            model.SerializeToString(), cpu_session_options(), providers=["CPUExecutionProvider"]
        )

    rng = np.random.default_rng(0)
    runs: dict[str, Callable[[], object]] = {"forward": forward}
    for graph, shapes in weights.items():
        if not shapes:  # nothing to re-read (a backward that starts with a row of the last Dense)
            continue
        product, feeds = _product_graph(shapes, rng)
        products, empty = session(product), session(_empty_graph(feeds))
        runs[graph] = lambda s=products, f=feeds: s.run(None, f)
        runs[f"{graph}_call"] = lambda s=empty, f=feeds: s.run(None, f)
    ms = alternate(runs, rounds)
    report: dict[str, Any] = {"forward_ms": ms["forward"]}
    for graph, shapes in weights.items():
        megabytes = sum(r * c * 4 for r, c in shapes) / 2**20
        floor = max(0.0, ms[graph] - ms[f"{graph}_call"]) if shapes else 0.0
        report[graph] = {
            "weights": [list(w) for w in shapes],
            "weight_mb": megabytes,
            "floor_ms": floor,
            "call_ms": ms.get(f"{graph}_call", 0.0),
            "gb_per_s": megabytes / 1024 / (floor / 1000) if floor > 0 else float("inf"),
            "ratio_floor": 1.0 + floor / ms["forward"],
        }
    return report


def backward_floor(paths: dict[str, str], size: int, rounds: int) -> dict[str, Any]:
    """The weight-read floor of the pooled and full graphs beside their forward-only graph."""
    forward = sessions({"none": paths["none"]})["none"]
    image = np.random.default_rng(0).integers(0, 256, (1, size, size, 3), dtype=np.uint8)
    feeds = {"image": image, "targets": np.full((1, 1), -1, np.int64)}
    weights = {graph: backward_weights(paths[graph]) for graph in ("pooled", "full")}
    return weight_read_floor(lambda: forward.run(None, feeds), weights, rounds)


def session_rss(paths: dict[str, str], size: int) -> dict[str, Any]:
    report = {n: child("rss", p, str(size)) for n, p in paths.items()}
    for n in report:
        report[n]["ratio"] = report[n]["process_mb"] / report["none"]["process_mb"]
    return report


def seed_method(subject: Subject, full_path: str, rounds: int) -> dict[str, Any]:
    """The blog post's way: Keras + GradientTape per frame, same weights and image, against our graph."""
    import keras
    import onnxruntime as ort
    import tensorflow as tf

    from realtime.engines.providers import cpu_session_options
    from realtime.export.checks.keras_reference import reference_gradcam

    if subject.name == "vgg16":
        keras.utils.set_random_seed(0)
        model = keras.applications.VGG16(weights=None, classifier_activation=None)
        layer, prep = "block5_conv3", "caffe"
    else:
        model = keras.models.load_model(subject.keras_model, compile=False)
        layer, prep = subject.layer, "tf"
    image = np.random.default_rng(1).integers(0, 256, (1, subject.input_size, subject.input_size, 3), dtype=np.uint8)
    targets = np.array([[-1]], np.int64)
    body = keras.Model(model.inputs, [model.get_layer(layer).output, model.output])

    def tape_gradcam() -> np.ndarray:
        """The seed, per frame: predict to pick the class, then activations and the gradient of its logit."""
        from realtime.export.checks.keras_reference import PREPROCESSORS

        x = PREPROCESSORS[prep](tf.cast(tf.constant(image), tf.float32))
        class_idx = int(tf.argmax(model(x, training=False)[0]))  # the seed's model.predict(x)
        with tf.GradientTape() as tape:
            a, logits = body(x, training=False)
            score = logits[:, class_idx]
        grads = tape.gradient(score, a)
        weights = tf.reduce_mean(grads, axis=(1, 2))
        return tf.nn.relu(tf.einsum("nhwc,nc->nhw", a, weights)).numpy()

    session = ort.InferenceSession(full_path, cpu_session_options(), providers=["CPUExecutionProvider"])
    feeds = {"image": image, "targets": targets}
    ms = alternate({"tape": tape_gradcam, "onnx_full": lambda: session.run(None, feeds)}, rounds)
    ours = session.run(["cam"], feeds)[0][0, 0]
    ref = reference_gradcam(model, layer, prep, image, targets)["cam"][0, 0]
    seed_map = tape_gradcam()[0]
    seed_map = seed_map / max(float(seed_map.max()), 1e-12)
    return {
        "tape_ms": ms["tape"],
        "onnx_full_ms": ms["onnx_full"],
        "speedup": ms["tape"] / ms["onnx_full"],
        "max_abs_map_diff_vs_seed": float(np.abs(ours - seed_map).max()),
        "max_abs_map_diff_vs_reference": float(np.abs(ours - ref).max()),
    }
