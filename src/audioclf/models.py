"""Model registry. A new architecture is one builder function and one name in `MODEL_BUILDERS`.

Every model takes normalised features (batch, channels, freq, frames) and returns logits.
`Classifier` puts the training-set normalisation inside the model (buffers), so the exported
ONNX graph and `predict` need nothing but the raw features.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
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


def build_convnet(in_channels: int, n_classes: int, *, channels: list[int], dropout: float, **_: object) -> nn.Module:
    return ConvNet(in_channels, n_classes, channels, dropout)


IMAGENET_WEIGHTS = {
    "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth",
}


def imagenet_weights_path(arch: str) -> Path:
    """Where torchvision caches its ImageNet weights ($TORCH_HOME/hub/checkpoints/...)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_WEIGHTS[arch]


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
    at run time); the RGB filters of conv1 are averaged (1 channel) or tiled (more channels).
    """
    import torchvision

    net = getattr(torchvision.models, arch)(weights=None)
    if pretrained == "imagenet":
        path = imagenet_weights_path(arch)
        if not path.is_file():
            raise AudioclfError(
                f"train.pretrained: imagenet weights for {arch} not found at {path}; copy "
                f"{IMAGENET_WEIGHTS[arch]} there (TORCH_HOME={os.environ.get('TORCH_HOME', '~/.cache/torch')}) "
                "or set train.pretrained: none"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    old = net.conv1
    net.conv1 = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
    if pretrained == "imagenet":
        with torch.no_grad():
            mean_filter = old.weight.mean(dim=1, keepdim=True)
            net.conv1.weight.copy_(mean_filter.repeat(1, in_channels, 1, 1))
    net.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(net.fc.in_features, n_classes))
    return net


MODEL_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "convnet": build_convnet,
    "resnet18": lambda c, n, **kw: build_resnet("resnet18", c, n, **kw),
    "resnet34": lambda c, n, **kw: build_resnet("resnet34", c, n, **kw),
}


def backbone_parameters(name: str, net: nn.Module) -> list[nn.Parameter]:
    """Parameters frozen during `train.freeze_epochs`: everything but the head."""
    head = net.fc if name.startswith("resnet") else net.head
    head_ids = {id(p) for p in head.parameters()}
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
    if name not in MODEL_BUILDERS:
        raise AudioclfError(f"params: `train.model` is {name!r}; choose one of {', '.join(MODEL_BUILDERS)}")
    return Classifier(MODEL_BUILDERS[name](in_channels, n_classes, **kwargs), mean, std)
