"""The architectures people train today, small and seeded, as the corpus test takes them: timm, torchvision
and Hugging Face `transformers` (small configs, built offline), each with the input size it allows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Architecture:
    name: str
    family: str  # how the README's table groups it
    library: str  # timm | torchvision | transformers
    build: Callable[[int], Any]  # the model for an input side in pixels
    size: int  # the test's input side in pixels
    exporter: str  # dynamo (torch.onnx.export's default) | classic


def _timm(name: str, sized: bool = False, **options: Any) -> Callable[[int], Any]:
    """sized: the model is built for its input size (a transformer's position embeddings); options: a smaller
    configuration of the same architecture."""

    def build(size: int) -> Any:
        import timm

        sizing = {"img_size": size} if sized else {}
        return timm.create_model(name, pretrained=False, num_classes=10, **sizing, **options)

    return build


def _torchvision(name: str, sized: bool = False, **options: Any) -> Callable[[int], Any]:
    """A builder or a model class of torchvision.models, with options for a smaller configuration; sized: built
    for its input size (MaxViT's)."""

    def build(size: int) -> Any:
        import torchvision

        sizing = {"input_size": (size, size)} if sized else {}
        return getattr(torchvision.models, name)(num_classes=10, **sizing, **options)

    return build


def hugging_face(config_class: str, model_class: str, **config: Any) -> Callable[[int], Any]:
    def build(size: int) -> Any:
        import torch
        import transformers

        class Logits(torch.nn.Module):
            def __init__(self, inner: Any) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, x: Any) -> Any:
                return self.inner(pixel_values=x).logits

        sized = {"image_size": size} if config_class == "ViTConfig" else {}
        settings = getattr(transformers, config_class)(num_labels=10, **config, **sized)
        return Logits(getattr(transformers, model_class)(settings))

    return build


CNN, TRANSFORMER, MLP = "CNNs", "vision transformers", "MLP and pooling mixers"

ARCHITECTURES = [
    Architecture("resnet18", CNN, "torchvision", _torchvision("resnet18"), 64, "classic"),
    Architecture("mobilenet_v2", CNN, "torchvision", _torchvision("mobilenet_v2"), 64, "dynamo"),
    Architecture("mobilenet_v3_small", CNN, "torchvision", _torchvision("mobilenet_v3_small"), 64, "classic"),
    Architecture("shufflenet_v2_x0_5", CNN, "torchvision", _torchvision("shufflenet_v2_x0_5"), 64, "dynamo"),
    Architecture("squeezenet1_1", CNN, "torchvision", _torchvision("squeezenet1_1"), 64, "classic"),
    Architecture("mnasnet0_5", CNN, "torchvision", _torchvision("mnasnet0_5"), 64, "dynamo"),
    Architecture("efficientnet_b0", CNN, "torchvision", _torchvision("efficientnet_b0"), 64, "classic"),
    Architecture("regnet_y_400mf", CNN, "torchvision", _torchvision("regnet_y_400mf"), 64, "dynamo"),
    Architecture("densenet121", CNN, "torchvision", _torchvision("densenet121"), 64, "classic"),
    Architecture("regnet_x_400mf", CNN, "torchvision", _torchvision("regnet_x_400mf"), 64, "dynamo"),
    Architecture("convnext_tiny", CNN, "torchvision", _torchvision("convnext_tiny"), 64, "classic"),
    Architecture("resnet10t", CNN, "timm", _timm("resnet10t"), 64, "dynamo"),
    Architecture("efficientnet_lite0", CNN, "timm", _timm("efficientnet_lite0"), 64, "classic"),
    Architecture("mobilenetv3_small_050", CNN, "timm", _timm("mobilenetv3_small_050"), 64, "dynamo"),
    Architecture("ghostnet_050", CNN, "timm", _timm("ghostnet_050"), 64, "classic"),
    Architecture("rexnet_100", CNN, "timm", _timm("rexnet_100"), 64, "dynamo"),
    Architecture("lcnet_050", CNN, "timm", _timm("lcnet_050"), 64, "classic"),
    Architecture("dla34", CNN, "timm", _timm("dla34"), 64, "dynamo"),
    Architecture("repvgg_a0", CNN, "timm", _timm("repvgg_a0"), 64, "classic"),
    Architecture("cspresnet50", CNN, "timm", _timm("cspresnet50"), 64, "dynamo"),
    Architecture("inception_v3", CNN, "timm", _timm("inception_v3"), 96, "classic"),  # overlapping AveragePool
    Architecture("res2net50_14w_8s", CNN, "timm", _timm("res2net50_14w_8s"), 64, "dynamo"),
    Architecture("hrnet_w18_small", CNN, "timm", _timm("hrnet_w18_small"), 64, "classic"),  # Resize in fusion
    Architecture("efficientvit_b0", CNN, "timm", _timm("efficientvit_b0"), 64, "dynamo"),  # ReLU linear attention
    Architecture("poolformer_s12", MLP, "timm", _timm("poolformer_s12"), 64, "classic"),
    Architecture("resmlp_12_224", MLP, "timm", _timm("resmlp_12_224", sized=True), 64, "dynamo"),
    Architecture("deit_tiny_patch16_224", TRANSFORMER, "timm", _timm("deit_tiny_patch16_224", sized=True), 64,
                 "dynamo"),
    Architecture("eva02_tiny_patch14_224", TRANSFORMER, "timm",  # rotary embeddings: Slices with step 2
                 _timm("eva02_tiny_patch14_224", sized=True), 56, "dynamo"),
    Architecture("cait_xxs24_224", TRANSFORMER, "timm", _timm("cait_xxs24_224", sized=True), 64, "dynamo"),
    Architecture("vit_little_patch16_reg4", TRANSFORMER, "timm",  # 4 register tokens, no class token: no flag
                 _timm("vit_little_patch16_reg4_gap_256", sized=True), 64, "dynamo"),
    Architecture("levit_128s", TRANSFORMER, "timm", _timm("levit_128s", sized=True), 64,  # BatchNorm1d on N*T
                 "dynamo"),
    Architecture("mobilevit_xxs", TRANSFORMER, "timm", _timm("mobilevit_xxs"), 64, "dynamo"),  # patches in N
    Architecture("swin", TRANSFORMER, "timm",  # shifted windows folded into the batch, with masks, every stage
                 _timm("swin_tiny_patch4_window7_224", sized=True, window_size=4, embed_dim=32, depths=(1, 1, 2, 1),
                       num_heads=(1, 2, 4, 8)), 64, "dynamo"),
    Architecture("swin_t", TRANSFORMER, "torchvision",
                 _torchvision("SwinTransformer", patch_size=[4, 4], embed_dim=32, depths=[2, 2, 2, 2],
                              num_heads=[1, 2, 4, 8], window_size=[4, 4]), 64, "classic"),
    Architecture("maxvit_t", TRANSFORMER, "torchvision",  # attention as Einsum
                 _torchvision("MaxVit", sized=True, stem_channels=16, partition_size=2,
                              block_channels=[16, 32], block_layers=[1, 1], head_dim=8, stochastic_depth_prob=0.0),
                 64, "classic"),
    Architecture("maxvit_nano_rw_256", TRANSFORMER, "timm", _timm("maxvit_nano_rw_256", sized=True), 64, "classic"),
    Architecture("beit", TRANSFORMER, "timm",  # relative position bias; torch's dynamo exporter fails on it
                 _timm("beit_base_patch16_224", sized=True, embed_dim=64, depth=2, num_heads=2), 64, "classic"),
    Architecture("hf_swin", TRANSFORMER, "transformers",
                 hugging_face("SwinConfig", "SwinForImageClassification", image_size=64, patch_size=4, embed_dim=16,
                              depths=[2, 2], num_heads=[2, 2], window_size=4), 64, "classic"),
    Architecture("hf_vit", TRANSFORMER, "transformers",
                 hugging_face("ViTConfig", "ViTForImageClassification", patch_size=16,
                               hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=128),
                 64, "dynamo"),
    Architecture("hf_convnext", CNN, "transformers",
                 hugging_face("ConvNextConfig", "ConvNextForImageClassification", hidden_sizes=[16, 32, 64, 128],
                               depths=[1, 1, 2, 1]), 64, "classic"),
    Architecture("hf_resnet", CNN, "transformers",
                 hugging_face("ResNetConfig", "ResNetForImageClassification", hidden_sizes=[16, 32, 64, 128],
                               depths=[1, 1, 1, 1], embedding_size=16), 64, "dynamo"),
]  # fmt: skip


def families_table() -> str:
    """The README's table of model families: what the corpus test checks, grouped, so it cannot claim more."""
    rows = ["| family | checked by the corpus test (default layer and input gradient, against torch autograd) |",
            "|---|---|"]  # fmt: skip
    for family in (CNN, TRANSFORMER, MLP):
        names = [f"{a.name} ({a.library})" for a in ARCHITECTURES if a.family == family]
        rows.append(f"| {family} | {', '.join(names)} |")
    return "\n".join(rows)
