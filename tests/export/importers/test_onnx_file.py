"""ONNX files in: heads, layouts, preprocessing, and refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from realtime import contract
from realtime.export import cli as export_cli
from realtime.export.checks.portable import TENSORRT_OPS
from realtime.export.checks.run import run_onnx
from realtime.export.pipeline import ExportConfig, ExportError, export
from realtime.export.preprocessing import PRESETS, Preprocess, preprocess_numpy
from realtime.live import cli
from tests.helpers.optional import needs
from tests.helpers.video import write_video

torch = needs("torch")


nn = torch.nn


SIZE = 32


class Net(nn.Module):
    """conv body -> `head`; the map is the body's last ReLU (8 channels, 16x16)."""

    def __init__(self, head: nn.Module, nhwc: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU()
        )
        self.head = head
        self.nhwc = nhwc

    def forward(self, x):  # type: ignore[no-untyped-def]
        if self.nhwc:
            x = x.permute(0, 3, 1, 2)
        return self.head(self.body(x))


class MeanHead(nn.Module):
    """x.mean((2, 3)) -> ReduceMean; then a BatchNorm1d, Tanh and Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.bn, self.fc = nn.BatchNorm1d(8), nn.Linear(8, 5)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.fc(torch.tanh(self.bn(x.mean((2, 3)))))


class NormHead(nn.Module):
    """ConvNeXt's head: pool, LayerNorm over channels (through a permute), flatten, Linear; and a SiLU."""

    def __init__(self) -> None:
        super().__init__()
        self.norm, self.fc = nn.LayerNorm(8), nn.Linear(8, 4)

    def forward(self, x):  # type: ignore[no-untyped-def]
        x = nn.functional.adaptive_avg_pool2d(x, 1)
        x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.fc(nn.functional.silu(torch.flatten(x, 1)))


HEADS = {
    # VGG-like: odd max-pool (16 -> 7 after a 2x2 crop? no: 16 -> 5 with kernel 3) is refused; 2x2 and floor crops
    "maxpool_flatten_relu6": lambda: nn.Sequential(
        nn.MaxPool2d(2),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 12),
        nn.ReLU6(),
        nn.Dropout(),
        nn.Linear(12, 5),
    ),
    "odd_pool_leaky_hardswish": lambda: nn.Sequential(
        nn.MaxPool2d(3), nn.Flatten(), nn.Linear(8 * 5 * 5, 12), nn.LeakyReLU(0.1), nn.Hardswish(), nn.Linear(12, 5)
    ),
    "gmp_hardsigmoid_sigmoid_softmax": lambda: nn.Sequential(
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 12),
        nn.Hardsigmoid(),
        nn.Linear(12, 12),
        nn.Sigmoid(),
        nn.Linear(12, 5),
        nn.Softmax(dim=1),
    ),
    "mean_batchnorm_tanh": MeanHead,
    "layernorm_silu": NormHead,
    "gap_squeeze": lambda: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)),
}


def make(head: str, seed: int = 0, nhwc: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    model = Net(HEADS[head](), nhwc).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d):
                module.running_mean.normal_(0, 0.2)
                module.running_var.uniform_(0.5, 1.5)
            if isinstance(module, nn.LayerNorm):
                module.weight.normal_(1, 0.2)
                module.bias.normal_(0, 0.2)
    return model


def to_onnx(model: nn.Module, path: Path, nhwc: bool = False, names: tuple[str, str] = ("x", "y")) -> Path:
    dummy = torch.zeros((1, SIZE, SIZE, 3) if nhwc else (1, 3, SIZE, SIZE))
    torch.onnx.export(
        model, dummy, str(path), opset_version=17, dynamo=False, input_names=[names[0]], output_names=[names[1]],
        dynamic_axes={names[0]: {0: "n"}, names[1]: {0: "n"}},
    )  # fmt: skip
    return path


def reference(model: Net, x: np.ndarray, classes: np.ndarray, at: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Autograd at the body's output; a trailing Softmax is explained through its logits.

    `at` (NHWC) is the graph's own activations: the head's kinks (ReLU signs, max-pool winners) are then
    decided on the numbers the graph saw, not on torch's rounding of the body.
    """
    xt = torch.from_numpy(x)
    if model.nhwc:
        xt = xt.permute(0, 3, 1, 2)
    with torch.no_grad():
        a = model.body(xt)
    body_activations = a.numpy().transpose(0, 2, 3, 1)
    if at is not None:
        a = torch.from_numpy(np.ascontiguousarray(at.transpose(0, 3, 1, 2)))
    a = a.clone().requires_grad_(True)
    head = model.head
    if isinstance(head, nn.Sequential) and isinstance(head[-1], nn.Softmax):
        head = head[:-1]
    logits = head(a)
    grads = []
    for k in range(classes.shape[1]):
        score = logits[torch.arange(len(classes)), torch.from_numpy(classes[:, k])].sum()
        grads.append(torch.autograd.grad(score, a, retain_graph=True)[0].numpy())
    g = np.stack(grads, 1)
    weights = g.mean(axis=(3, 4))
    cam = np.maximum(np.einsum("nchw,nkc->nkhw", a.detach().numpy(), weights), 0)
    peak = cam.max(axis=(2, 3), keepdims=True)
    return {
        "logits": logits.detach().numpy(),
        "body_activations": body_activations,
        "gradients": g.transpose(0, 1, 3, 4, 2),
        "weights": weights,
        "cam": cam / np.where(peak > 0, peak, 1),
    }


def check(path: Path, model: Net, preprocess: Preprocess, layout: str, gradients: str) -> None:
    image = np.random.default_rng(3).integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
    targets = np.array([[-1, 2], [1, -1], [-1, -1]], np.int64)
    got = run_onnx(path, image, targets)
    ref = reference(model, preprocess_numpy(image, preprocess, layout), got["classes"], at=got["activations"])
    peak = np.abs(ref["body_activations"]).max()
    np.testing.assert_allclose(got["activations"], ref["body_activations"], atol=1e-4 * peak)
    ranked = np.argsort(-ref["logits"], axis=1, kind="stable")
    np.testing.assert_array_equal(got["classes"], np.where(targets >= 0, targets, ranked[:, :2]))
    np.testing.assert_allclose(got["logits"], ref["logits"], atol=1e-4 * np.abs(ref["logits"]).max())
    np.testing.assert_allclose(got["weights"], ref["weights"], atol=1e-4 * max(np.abs(ref["weights"]).max(), 1e-3))
    np.testing.assert_allclose(got["cam"], ref["cam"], atol=1e-4)
    if gradients == "full":
        np.testing.assert_allclose(got["gradients"], ref["gradients"], atol=1e-4 * np.abs(ref["gradients"]).max())
    onnx.checker.check_model(str(path), full_check=True)
    assert {n.op_type for n in onnx.load(str(path)).graph.node} <= TENSORRT_OPS


@pytest.mark.parametrize("gradients", ["full", "pooled"])
@pytest.mark.parametrize("head", list(HEADS))
def test_head_ops_match_autograd(head: str, gradients: str, tmp_path: Path) -> None:
    model = make(head)
    source = to_onnx(model, tmp_path / "m.onnx")
    path = export(ExportConfig(onnx=source, gradients=gradients, output=tmp_path / "g.onnx", quiet=True)).output
    check(path, model, PRESETS["torch"], "NCHW", gradients)


def test_nhwc_input_and_explicit_mean_std_bgr(tmp_path: Path) -> None:
    """Also: the model's own tensors are called 'image' and 'logits', like the contract's."""
    model = make("maxpool_flatten_relu6", nhwc=True)
    source = to_onnx(model, tmp_path / "m.onnx", nhwc=True, names=("image", "logits"))
    spec = Preprocess("bgr", (10.0, 20.0, 30.0), (50.0, 60.0, 70.0))
    config = ExportConfig(
        onnx=source, output=tmp_path / "g.onnx", mean=spec.mean, std=spec.std, channels="bgr", quiet=True
    )
    path = export(config).output
    check(path, model, spec, "NHWC", "full")
    meta = onnx.load(str(path)).metadata_props
    assert {p.key: p.value for p in meta}[contract.META_PREPROCESSING] == "custom"


def test_list_layers_marks_the_default(tmp_path: Path, capsys) -> None:
    source = to_onnx(make("maxpool_flatten_relu6"), tmp_path / "m.onnx")
    assert export_cli.main(["--onnx", str(source), "--list-layers"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    default = [line for line in lines if line.endswith("(default)")]
    assert len(default) == 1 and "Relu" in default[0] and "8x16x16" in default[0]
    assert len(lines) >= 3  # the first conv's map and the pools are candidates too


def test_unsupported_head_op_is_named_with_a_layer_that_works(tmp_path: Path, capsys) -> None:
    """An op without a derivative rule (ELU) after the chosen map is refused by name; the suggested --layer exports."""
    torch.manual_seed(0)
    head = nn.Sequential(nn.Conv2d(8, 4, 1), nn.ELU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    source = to_onnx(Net(head).eval(), tmp_path / "m.onnx")
    layers = [line.split("\t")[0] for line in _list(source, capsys)]
    first_relu = next(name for name in layers if "body" in name and "Relu" in name)
    out = tmp_path / "g.onnx"
    code = export_cli.main(["--onnx", str(source), "--layer", first_relu, "--output", str(out), "--quiet"])
    message = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert "(Elu)" in message and "not supported in the head" in message
    suggested = message.split("--layer ")[1].split(" ")[0]
    assert export_cli.main(["--onnx", str(source), "--layer", suggested, "--output", str(out), "--quiet"]) == 0
    assert out.exists()


def test_an_overlapping_pool_and_a_conv_in_the_head_match_torch(tmp_path: Path, capsys) -> None:
    """A 3x3, stride-2 max pool and a convolution after the map: differentiated, not refused (any layer)."""
    torch.manual_seed(0)
    head = nn.Sequential(nn.MaxPool2d(3, stride=2), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Flatten())
    model = Net(nn.Sequential(*head, nn.Linear(8 * 7 * 7, 3))).eval()
    source = to_onnx(model, tmp_path / "m.onnx")
    layers = [line.split("\t")[0] for line in _list(source, capsys)]
    body = [name for name in layers if "body" in name and "Relu" in name][-1]  # the map before the pool
    graph = export(ExportConfig(onnx=source, layer=body, output=tmp_path / "g.onnx", quiet=True)).output
    image = np.random.default_rng(4).integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
    targets = np.array([[-1], [2]], np.int64)
    got = run_onnx(graph, image, targets)
    ref = reference(model, preprocess_numpy(image, PRESETS["torch"], "NCHW"), got["classes"], at=got["activations"])
    peak = np.abs(ref["gradients"]).max()
    assert np.abs(got["gradients"] - ref["gradients"]).max() <= 1e-4 * peak


def _list(source: Path, capsys) -> list[str]:
    assert export_cli.main(["--onnx", str(source), "--list-layers"]) == 0
    return capsys.readouterr().out.strip().splitlines()


def test_bad_inputs_fail_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no such file"):
        export(ExportConfig(onnx=tmp_path / "missing.onnx", output=tmp_path / "x.onnx", quiet=True))
    with pytest.raises(ExportError, match=r"end in \.onnx"):
        export(ExportConfig(onnx=tmp_path / "m.onnx", output=tmp_path / "x.png", quiet=True))
    with pytest.raises(ExportError, match="--mean and --std"):
        export(ExportConfig(onnx=tmp_path / "m.onnx", mean=(1.0, 2.0, 3.0), quiet=True))
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(ExportError, match="not an ONNX model"):
        export(ExportConfig(onnx=tmp_path / "bad.onnx", output=tmp_path / "x.onnx", quiet=True))


def test_live_view_and_int8_run_an_imported_model(tmp_path: Path) -> None:
    """The runtime needs nothing new: gradcam-live records a clip through an --onnx export, fp32 and int8."""
    source = to_onnx(make("gap_squeeze"), tmp_path / "m.onnx")
    fp32 = export(ExportConfig(onnx=source, output=tmp_path / "fp32.onnx", quiet=True)).output
    int8 = export(
        ExportConfig(onnx=source, output=tmp_path / "int8.onnx", int8=True, calibration="random", quiet=True)
    ).output
    video = write_video(tmp_path / "in.mp4", 5, size=(96, 64))
    for model in (fp32, int8):
        out = tmp_path / f"{model.stem}.avi"
        argv = [
            "--source",
            str(video),
            "--model",
            str(model),
            "--no-window",
            "--providers",
            "cpu",
            "--record",
            str(out),
        ]
        assert cli.main(argv) == 0
        assert out.exists() and out.stat().st_size > 0
