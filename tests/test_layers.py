"""Any layer: gradients through the convolutional body, at two layers per model and at the input,
against torch autograd; guided backpropagation against pytorch-grad-cam (issue: Any layer).

Two runtimes' float32 forwards differ by about 1e-6 relative: enough to move a ReLU's input across
zero, or a max pool's first maximum to its near-equal neighbour, somewhere among a ResNet's million
units, and the gradient below that unit changes. Those are decisions, not arithmetic: the torch
references take them from the exported graph's own forward (each ReLU's mask, each pool's inputs,
with torch's first-maximum rule), and everything else is torch autograd.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from tests.conftest import forward_values, needs
from tests.torch_models import build_model, export_onnx

torch = needs("torch")
needs("torchvision")

from realtime.export.checks.run import run_onnx  # noqa: E402
from realtime.export.pipeline import ExportConfig, export  # noqa: E402
from realtime.export.preprocessing import PRESETS, preprocess_numpy  # noqa: E402
from tests.torch_models import CASES  # noqa: E402

TOLERANCE = 1e-4
LAYERS = {  # two torch modules per model whose outputs the exporter is asked to explain
    "resnet50": ("layer3", "layer2"),
    "mobilenet_v3_large": ("features.12", "features.6"),
    "efficientnet_b0": ("features.5", "features.3"),
    "densenet121": ("features.denseblock3", "features.transition2"),
}


def _module(model: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        model = model[int(part)] if part.isdigit() else getattr(model, part)
    return model


def _tensor_names(source: Path, model: Any, modules: tuple[str, ...], x: np.ndarray) -> list[str]:
    """The ONNX tensor that holds each module's output, found by value among the exported graph's tensors."""
    import onnxruntime as ort

    seen: dict[str, Any] = {}
    hooks = [_module(model, m).register_forward_hook(lambda _m, _i, o, m=m: seen.__setitem__(m, o)) for m in modules]
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


class RoutedMaxPool(torch.nn.Module):  # type: ignore[misc,name-defined]
    """A max pool whose backward routes by given pool inputs (the exported graph's), first maximum first."""

    def __init__(self, pool: Any, routing_input: Any) -> None:
        super().__init__()
        self.pool, self.routing_input = pool, routing_input

    def forward(self, x: Any) -> Any:
        _, indices = torch.nn.functional.max_pool2d(
            self.routing_input, self.pool.kernel_size, self.pool.stride, self.pool.padding, self.pool.dilation,
            ceil_mode=self.pool.ceil_mode, return_indices=True,
        )  # fmt: skip
        flat = x.flatten(2)
        return torch.gather(flat, 2, indices.flatten(2)).view(indices.shape)


def _relu_output(node: onnx.NodeProto) -> str | None:
    return node.output[0] if node.op_type == "Relu" else None


@contextlib.contextmanager
def _relu_masks_from(graph: Path, image: np.ndarray, targets: np.ndarray) -> Any:
    """Within the block, torch's ReLUs keep exactly the units the graph's forward ReLUs kept, in order."""
    relus = forward_values(graph, image, targets, _relu_output)
    masks = [torch.from_numpy(value > 0) for _, value in relus]
    original = torch.nn.functional.relu
    calls = iter(masks)

    def relu(x: Any, inplace: bool = False) -> Any:
        mask = next(calls)
        assert mask.shape == x.shape, (mask.shape, x.shape)
        return x * mask

    torch.nn.functional.relu = relu
    try:
        yield
        assert next(calls, None) is None, "torch ran fewer ReLUs than the graph has"
    finally:
        torch.nn.functional.relu = original


def _pool_input(node: onnx.NodeProto) -> str | None:
    return node.input[0] if node.op_type == "MaxPool" else None


def _relu_output_or_pool_input(node: onnx.NodeProto) -> str | None:
    return _pool_input(node) or _relu_output(node)


def _of(op_type: str, values: list[tuple[str, np.ndarray]]) -> list[np.ndarray]:
    return [value for op, value in values if op == op_type]


def _route_pools(model: Any, pool_inputs: list[np.ndarray]) -> Any:
    """`model` with every MaxPool2d routed by the pool inputs the Grad-CAM graph computed."""
    pools = [(name, m) for name, m in model.named_modules() if isinstance(m, torch.nn.MaxPool2d)]
    if not pools:
        return model
    assert len(pool_inputs) == len(pools), (len(pool_inputs), [p for p, _ in pools])
    for (name, pool), value in zip(pools, pool_inputs, strict=True):
        owner, _, last = name.rpartition(".")
        parent = _module(model, owner) if owner else model
        routed = RoutedMaxPool(pool, torch.from_numpy(value))
        if last.isdigit():
            parent[int(last)] = routed
        else:
            setattr(parent, last, routed)
    return model


@pytest.fixture(scope="module", params=list(LAYERS))
def exported(request, tmp_path_factory):
    """(case, torch model, graph path, layer names, image, targets, preprocessed input)."""
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
    model = _route_pools(model, _of("MaxPool", forward_values(graph, image, targets, _pool_input)))
    yield case, model, graph, image, targets, x
    graph.unlink()


def _reference(model: Any, modules: tuple[str, ...], x: np.ndarray, classes: np.ndarray) -> dict[str, np.ndarray]:
    """Gradients [N,K,H,W,C] at each module's output and at the input, by torch autograd."""
    seen: dict[str, Any] = {}
    hooks = [_module(model, m).register_forward_hook(lambda _m, _i, o, m=m: seen.__setitem__(m, o)) for m in modules]
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
    case, model, graph, image, targets, x = exported
    got = run_onnx(graph, image, targets)
    with _relu_masks_from(graph, image, targets):
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


def test_guided_backprop_matches_pytorch_grad_cam_on_vgg16(tmp_path: Path) -> None:
    """Guided backpropagation to the input of torchvision VGG16, against pytorch-grad-cam's own model."""
    grad_cam = needs("pytorch_grad_cam")
    case = CASES["vgg16"]
    model = build_model(case)
    source = export_onnx(model, tmp_path / "vgg16.onnx")
    graph = export(
        ExportConfig(onnx=source, input_gradients="guided", output=tmp_path / "g.onnx", quiet=True, self_check=False)
    ).output
    image = np.random.default_rng(3).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    targets = np.array([[-1, 11]], np.int64)
    x = preprocess_numpy(image, PRESETS["torch"], "NCHW")
    got = run_onnx(graph, image, targets)
    decisions = forward_values(graph, image, targets, _relu_output_or_pool_input)  # one run serves every target
    routed = _route_pools(model, _of("MaxPool", decisions))
    guided = grad_cam.GuidedBackpropReLUModel(routed, device=torch.device("cpu"))
    for k in range(2):
        with _guided_relu_masks_from(_of("Relu", decisions), grad_cam):
            want = guided(torch.from_numpy(x).clone(), target_category=int(got["classes"][0, k]))  # [H,W,3]
        error = np.abs(got["guided"][0, k] - want).max() / np.abs(want).max()
        assert error <= TOLERANCE, f"guided backprop, target {k}: {error:.2e} relative"


@contextlib.contextmanager
def _guided_relu_masks_from(relu_outputs: list[np.ndarray], grad_cam: Any) -> Any:
    """pytorch-grad-cam's guided ReLUs, each fed an input whose sign is the graph's forward decision
    (a straight-through nudge of the units the two runtimes put on opposite sides of zero)."""
    masks = iter([torch.from_numpy(value > 0) for value in relu_outputs])
    module = grad_cam.guided_backprop.GuidedBackpropReLUasModule
    original = module.forward

    def forward(self: Any, x: Any) -> Any:
        mask = next(masks)
        decided = torch.where(mask, x.clamp(min=1e-30), x.clamp(max=0.0))
        return original(self, x + (decided - x).detach())

    module.forward = forward
    try:
        yield
    finally:
        module.forward = original
