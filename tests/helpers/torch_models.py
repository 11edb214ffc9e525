"""torchvision and timm classifiers with seeded random weights, split where Grad-CAM looks.

Each split is written from the model's own forward(), independently of the
exporter's graph analysis: `body(x)` is the map the exporter's default layer
should pick, `head(a)` the rest up to the logits. Torch autograd through
`head` is the reference the exported graphs are held to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tests.helpers.torch_export import as_users_export

Split = tuple[Callable[[Any], Any], Callable[[Any], Any]]


@dataclass(frozen=True)
class TorchCase:
    name: str
    build: Callable[[], Any]
    split: Callable[[Any], Split]
    size: int = 224
    max_pool_head: bool = False  # routing may differ between runtimes where the forward nearly ties


def _torchvision(name: str) -> Callable[[], Any]:
    def build() -> Any:
        import torchvision

        return getattr(torchvision.models, name)(weights=None)

    return build


def _timm(name: str) -> Callable[[], Any]:
    def build() -> Any:
        import timm

        return timm.create_model(name, pretrained=False)

    return build


def _vgg(m: Any) -> Split:
    import torch

    return m.features[:30], lambda a: m.classifier(torch.flatten(m.avgpool(m.features[30](a)), 1))


def _resnet(m: Any) -> Split:
    import torch

    def body(x: Any) -> Any:
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        return m.layer4(m.layer3(m.layer2(m.layer1(x))))

    return body, lambda a: m.fc(torch.flatten(m.avgpool(a), 1))


def _features_avgpool_classifier(m: Any) -> Split:
    import torch

    return m.features, lambda a: m.classifier(torch.flatten(m.avgpool(a), 1))


def _densenet(m: Any) -> Split:
    import torch
    import torch.nn.functional as F

    return (
        lambda x: F.relu(m.features(x)),
        lambda a: m.classifier(torch.flatten(F.adaptive_avg_pool2d(a, (1, 1)), 1)),
    )


def _convnext(m: Any) -> Split:
    return m.features, lambda a: m.classifier(m.avgpool(a))


def _timm_split(m: Any) -> Split:
    return m.forward_features, m.forward_head


CASES = {
    case.name: case
    for case in (
        TorchCase("vgg16", _torchvision("vgg16"), _vgg, max_pool_head=True),
        TorchCase("resnet50", _torchvision("resnet50"), _resnet),
        TorchCase("mobilenet_v3_large", _torchvision("mobilenet_v3_large"), _features_avgpool_classifier),
        TorchCase("efficientnet_b0", _torchvision("efficientnet_b0"), _features_avgpool_classifier),
        TorchCase("densenet121", _torchvision("densenet121"), _densenet),
        TorchCase("convnext_tiny", _torchvision("convnext_tiny"), _convnext),
        TorchCase("timm_resnet18", _timm("resnet18"), _timm_split),
        TorchCase("timm_mobilenetv2_100", _timm("mobilenetv2_100"), _timm_split),
    )
}


def build_model(case: TorchCase, seed: int = 0) -> Any:
    """The model in eval mode, with random BatchNorm statistics so that folding them is tested too."""
    import torch

    torch.manual_seed(seed)
    model = case.build().eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.copy_(0.1 * torch.randn(module.running_mean.shape, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(module.running_var.shape, generator=generator))
    return model


def export_onnx(model: Any, path: Path, size: int = 224) -> Path:
    """The way the README tells users to export: the classic exporter, opset 17, dynamic batch."""
    return as_users_export(model, "classic", path, size)


def reference(
    case: TorchCase, model: Any, x: np.ndarray, targets: np.ndarray, at: np.ndarray | None = None,
    body_activations: np.ndarray | None = None,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Logits, classes, activations (NHWC), channel weights and cam by torch autograd, batch x targets.

    `at` (NHWC, the graph's own activations) starts the head from the values the graph saw, so that
    its kinks (ReLU signs, max-pool winners) are decided on the same numbers: torch and onnxruntime
    round differently, and near-equal maxima can swap. `body_activations` is torch's own forward,
    to hold the graph's body to (given, when the caller has it for this `x` already).
    """
    import torch

    body, head = case.split(model)
    if body_activations is None or at is None:
        with torch.no_grad():
            activations = body(torch.from_numpy(x))
        body_activations = activations.numpy().transpose(0, 2, 3, 1)
    if at is not None:
        activations = torch.from_numpy(np.ascontiguousarray(at.transpose(0, 3, 1, 2)))
    a = activations.detach().clone().requires_grad_(True)
    logits = head(a)
    ranked = np.argsort(-logits.detach().numpy(), axis=1, kind="stable")
    classes = np.where(targets >= 0, targets, ranked[:, : targets.shape[1]])
    per_target = []
    for k in range(classes.shape[1]):
        score = logits[torch.arange(len(classes)), torch.from_numpy(classes[:, k])].sum()
        (grad,) = torch.autograd.grad(score, a, retain_graph=True)
        per_target.append(grad.numpy())
    grads = np.stack(per_target, axis=1)  # [N,K,C,h,w]
    acts = a.detach().numpy()
    weights = grads.mean(axis=(3, 4))
    cam = np.maximum(np.einsum("nchw,nkc->nkhw", acts, weights), 0)
    peak = cam.max(axis=(2, 3), keepdims=True)
    return {
        "logits": logits.detach().numpy(),
        "classes": classes.astype(np.int64),
        "activations": acts.transpose(0, 2, 3, 1),
        "body_activations": body_activations,
        "gradients": grads.transpose(0, 1, 3, 4, 2),
        "weights": weights,
        "cam": cam / np.where(peak > 0, peak, 1),
    }


def torchvision_onnx(name: str, folder: Path) -> Path:
    """torchvision `name` with seeded random weights as ONNX (opset 17, dynamic batch)."""
    import torch
    import torchvision

    torch.manual_seed(0)
    return export_onnx(getattr(torchvision.models, name)(weights=None).eval(), folder / f"{name}.onnx")


def resnet18_graphs(folder: Path) -> dict[str, Any]:
    """torchvision ResNet18 with seeded random weights exported three ways (pooled): its default graph
    ("fp32"), its fp16 copy (and "fp16_fidelity"), its TensorRT 8 profile ("trt8")."""
    import torchvision

    from realtime.export.pipeline import ExportConfig, export

    case = TorchCase("resnet18", lambda: torchvision.models.resnet18(weights=None), CASES["resnet50"].split)
    source = export_onnx(build_model(case), folder / "resnet18.onnx")
    graphs: dict[str, Any] = {}
    for name, extra in (("fp32", {}), ("fp16", {"fp16": True}), ("trt8", {"trt8": True})):
        out = folder / f"resnet18_{name}.onnx"
        result = export(ExportConfig(onnx=source, gradients="pooled", output=out, quiet=True, **extra))
        graphs[name] = out
        if name == "fp16":
            graphs["fp16_fidelity"] = result.fidelity
    return graphs
