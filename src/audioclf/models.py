"""Model registry. A new architecture is one builder function decorated with `@register(name)`.

Every model takes normalised features (batch, channels, freq, frames) and returns logits.
`Classifier` puts the training-set normalisation inside the model (buffers), so the exported
ONNX graph and `predict` need nothing but the raw features.
"""

from __future__ import annotations

import itertools
import math
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from audioclf.errors import AudioclfError


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2, ceil_mode=True),
    )


class ConvNet(nn.Module):
    """The tutorials' conv-BN-ReLU-pool stack, then global average pooling and a linear head."""

    def __init__(self, in_channels: int, n_classes: int, channels: list[int], dropout: float) -> None:
        super().__init__()
        widths = [in_channels, *channels]
        self.features = nn.Sequential(*[conv_block(a, b) for a, b in itertools.pairwise(widths)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(widths[-1], n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)))


@dataclass(frozen=True)
class Architecture:
    build: Callable[..., nn.Module]  # (in_channels, n_classes, **train-block params) -> net
    head: str  # attribute of the net holding the classifier head (trained during freeze_epochs)


MODEL_BUILDERS: dict[str, Architecture] = {}


def register(name: str, head: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """`@register("name", head="fc")` on a builder adds an architecture (also list the name in
    config.MODELS so params validation accepts it before torch is imported)."""

    def add(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODEL_BUILDERS[name] = Architecture(build, head)
        return build

    return add


@register("convnet", head="head")
def build_convnet(in_channels: int, n_classes: int, *, channels: list[int], dropout: float, **_: object) -> nn.Module:
    return ConvNet(in_channels, n_classes, channels, dropout)


IMAGENET_WEIGHTS = {
    "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth",
}


def imagenet_weights_path(arch: str) -> Path:
    """Where torchvision caches its ImageNet weights ($TORCH_HOME/hub/checkpoints/...)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_WEIGHTS[arch]


def load_imagenet_state(arch: str) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet state_dict from the local torch cache; never downloads (offline runs
    must not hang on the network, and a silent download would make runs unreproducible)."""
    path = imagenet_weights_path(arch)
    if not path.is_file():
        raise AudioclfError(
            f"train.pretrained: imagenet weights for {arch} not found at {path}; copy {IMAGENET_WEIGHTS[arch]} "
            f"there (TORCH_HOME={os.environ.get('TORCH_HOME', '~/.cache/torch')}) or set train.pretrained: none"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, ValueError, OSError, pickle.UnpicklingError) as exc:
        raise AudioclfError(f"{path}: unreadable {arch} weights ({exc}); replace the file") from exc


def adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """RGB filters (out, 3, k, k) → (out, in_channels, k, k) with the same response scale:
    summed for one channel (a grey image is R=G=B), else tiled and scaled by 3/in_channels
    (timm's `adapt_input_conv`)."""
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = math.ceil(in_channels / weight.shape[1])
    return weight.repeat(1, repeats, 1, 1)[:, :in_channels] * (weight.shape[1] / in_channels)


def build_resnet(
    arch: str,
    in_channels: int,
    n_classes: int,
    *,
    pretrained: str = "none",
    dropout: float = 0.0,
    **_: object,
) -> nn.Module:
    """torchvision ResNet with the first conv adapted to `in_channels` and a new head.

    With `pretrained: imagenet` the weights are read from the local torch cache (never downloaded
    at run time) and conv1's RGB filters are adapted by `adapt_first_conv`.
    """
    import torchvision

    net = getattr(torchvision.models, arch)(weights=None)
    if pretrained == "imagenet":
        path = imagenet_weights_path(arch)
        try:
            net.load_state_dict(load_imagenet_state(arch))
        except RuntimeError as exc:
            first = str(exc).splitlines()[0][:160]
            raise AudioclfError(f"{path}: not a torchvision {arch} state_dict ({first}); replace the file") from exc
    old = net.conv1
    net.conv1 = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
    if pretrained == "imagenet":
        with torch.no_grad():
            net.conv1.weight.copy_(adapt_first_conv(old.weight, in_channels))
    net.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(net.fc.in_features, n_classes))
    return net


@register("resnet18", head="fc")
def build_resnet18(in_channels: int, n_classes: int, **kwargs: object) -> nn.Module:
    return build_resnet("resnet18", in_channels, n_classes, **kwargs)


@register("resnet34", head="fc")
def build_resnet34(in_channels: int, n_classes: int, **kwargs: object) -> nn.Module:
    return build_resnet("resnet34", in_channels, n_classes, **kwargs)


def check_model_name(name: str) -> None:
    if name not in MODEL_BUILDERS:
        raise AudioclfError(f"params: `train.model` is {name!r}; choose one of {', '.join(MODEL_BUILDERS)}")


def backbone_parameters(name: str, net: nn.Module) -> list[nn.Parameter]:
    """Parameters frozen during `train.freeze_epochs`: everything but the registered head."""
    check_model_name(name)
    head_ids = {id(p) for p in getattr(net, MODEL_BUILDERS[name].head).parameters()}
    return [p for p in net.parameters() if id(p) not in head_ids]


class Classifier(nn.Module):
    """Normalise features with the training-set statistics (per frequency bin and channel),
    then run the network."""

    def __init__(self, net: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", mean.reshape(1, *mean.shape, 1).float())
        self.register_buffer("std", std.reshape(1, *std.shape, 1).float())

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.net((feats - self.mean) / self.std)


def build_model(
    name: str, in_channels: int, n_classes: int, mean: torch.Tensor, std: torch.Tensor, **kwargs: object
) -> Classifier:
    """mean/std: (channels, freq) training statistics. kwargs: the train block's model params."""
    check_model_name(name)
    return Classifier(MODEL_BUILDERS[name].build(in_channels, n_classes, **kwargs), mean, std)
