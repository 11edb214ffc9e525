"""Any layer and the input, against torch autograd."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from tests.helpers.graph_values import graph_values
from tests.helpers.optional import needs
from tests.helpers.torch_models import build_model, export_onnx

needs("torchvision")
from realtime.export.pipeline import ExportConfig, export  # noqa: E402
from realtime.export.preprocessing import PRESETS, preprocess_numpy  # noqa: E402
from tests.helpers.torch_models import CASES  # noqa: E402
from tests.helpers.torch_routing import module_at, of_type, relu_masks_from, relu_output_or_pool_input, route_pools  # noqa: E402

torch = needs("torch")


TOLERANCE = 1e-4


LAYERS = {  # two torch modules per model whose outputs the exporter is asked to explain
    "resnet50": ("layer3", "layer2"),
    "mobilenet_v3_large": ("features.12", "features.6"),
    "efficientnet_b0": ("features.5", "features.3"),
    "densenet121": ("features.denseblock3", "features.transition2"),
}


def _tensor_names(source: Path, model: Any, modules: tuple[str, ...], x: np.ndarray) -> list[str]:
    """The ONNX tensor that holds each module's output, found by value among the exported graph's tensors."""
    import onnxruntime as ort

    seen: dict[str, Any] = {}
    hooks = [module_at(model, m).register_forward_hook(lambda _m, _i, o, m=m: seen.__setitem__(m, o)) for m in modules]
    with torch.no_grad():
        model(torch.from_numpy(x))
    for hook in hooks:
        hook.remove()
    graph = onnx.load(str(source))
    shapes = {tuple(seen[m].shape[1:]) for m in modules}
    inferred = onnx.shape_inference.infer_shapes(graph)
    candidates = [
        v.name for v in inferred.graph.value_info
        if tuple(d.dim_value for d in v.type.tensor_type.shape.dim[1:]) in shapes
    ]  # fmt: skip
    graph.graph.output.extend([onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in candidates])
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    values = dict(zip(candidates, session.run(candidates, {"input": x}), strict=True))
    names = []
    for m in modules:
        want = seen[m].numpy()
        scale = np.abs(want).max()
        match = [
            n for n in candidates if values[n].shape == want.shape and np.abs(values[n] - want).max() <= 1e-4 * scale
        ]
        assert match, f"no tensor of {source.name} holds {m}'s output"
        names.append(match[0])  # the first of equal tensors: copies (a one-input Concat) come after it
    return names


@pytest.fixture(scope="module", params=list(LAYERS))
def exported(request, tmp_path_factory):
    """(case, torch model routed by the graph's pools, the graph's outputs, its ReLU outputs, preprocessed input)."""
    case = CASES[request.param]
    folder = tmp_path_factory.mktemp(case.name)
    model = build_model(case)
    image = np.random.default_rng(5).integers(0, 256, (2, case.size, case.size, 3), dtype=np.uint8)
    targets = np.array([[-1, 7], [3, -1]], np.int64)
    x = preprocess_numpy(image, PRESETS["torch"], "NCHW")
    source = export_onnx(model, folder / f"{case.name}.onnx", case.size)
    names = _tensor_names(source, model, LAYERS[case.name], x)
    config = ExportConfig(
        onnx=source, layer=names[0], more_layers=tuple(names[1:]), input_gradients="saliency",
        output=folder / f"{case.name}_layers.onnx", quiet=True, self_check=False,
    )  # fmt: skip
    graph = export(config).output
    got, decisions = graph_values(graph, image, targets, relu_output_or_pool_input)  # one session for all
    model = route_pools(model, of_type("MaxPool", decisions))
    yield case, model, got, of_type("Relu", decisions), x
    graph.unlink()


def _reference(model: Any, modules: tuple[str, ...], x: np.ndarray, classes: np.ndarray) -> dict[str, np.ndarray]:
    """Gradients [N,K,H,W,C] at each module's output and at the input, by torch autograd."""
    seen: dict[str, Any] = {}
    hooks = [module_at(model, m).register_forward_hook(lambda _m, _i, o, m=m: seen.__setitem__(m, o)) for m in modules]
    inputs = torch.from_numpy(x).requires_grad_(True)
    logits = model(inputs)
    for hook in hooks:
        hook.remove()
    tensors = [seen[m] for m in modules] + [inputs]
    per_tensor: list[list[np.ndarray]] = [[] for _ in tensors]
    for k in range(classes.shape[1]):
        score = logits[torch.arange(len(classes)), torch.from_numpy(classes[:, k])].sum()
        for i, grad in enumerate(torch.autograd.grad(score, tensors, retain_graph=True)):
            per_tensor[i].append(grad.numpy())
    return {f"layer{i}": np.stack(grads, axis=1).transpose(0, 1, 3, 4, 2) for i, grads in enumerate(per_tensor)} | {
        "logits": logits.detach().numpy()
    }


def test_every_layer_and_the_input_match_torch_autograd(exported) -> None:
    case, model, got, relus, x = exported
    with relu_masks_from(relus):
        ref = _reference(model, LAYERS[case.name], x, got["classes"])
    assert np.abs(got["logits"] - ref["logits"]).max() <= TOLERANCE * np.abs(ref["logits"]).max()
    names = ["gradients", "gradients_1", "saliency"]
    for i, name in enumerate(names):
        want = ref[f"layer{i}"]
        error = np.abs(got[name] - want).max() / np.abs(want).max()
        assert error <= TOLERANCE, f"{case.name} {name}: {error:.2e} relative"
    for i, suffix in enumerate(("", "_1")):
        want = ref[f"layer{i}"]
        weights = want.mean(axis=(2, 3))
        assert np.abs(got[f"weights{suffix}"] - weights).max() <= TOLERANCE * np.abs(weights).max()
        a = got[f"activations{suffix}"]
        cam = np.maximum(np.einsum("nhwc,nkc->nkhw", a, got[f"weights{suffix}"]), 0)
        peak = cam.max(axis=(2, 3), keepdims=True)
        assert np.abs(got[f"cam{suffix}"] - cam / np.where(peak > 0, peak, 1)).max() <= TOLERANCE
