"""`resnet18` / `resnet34`: torchvision ResNets with the first conv adapted to the feature channels
and a new head; optionally started from ImageNet weights read from the local torch cache."""

from __future__ import annotations

import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from audioclf.config import fail
from audioclf.errors import AudioclfError, brief
from audioclf.models import register

IMAGENET_WEIGHTS = {
    "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth",
}


@dataclass(frozen=True)
class ResNetParams:
    dropout: float = 0.2  # before the new linear head
    pretrained: Literal["none", "imagenet"] = "none"  # imagenet: from the local torch cache

    def __post_init__(self) -> None:
        if not 0.0 <= self.dropout < 1.0:
            fail("dropout", f"must be in [0, 1), got {self.dropout}")


def imagenet_weights_path(arch: str) -> Path:
    """Where torchvision caches its ImageNet weights ($TORCH_HOME/hub/checkpoints/...)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_WEIGHTS[arch]


def load_imagenet_state(arch: str) -> dict:
    """torchvision's ImageNet state_dict from the local torch cache; never downloads (offline runs
    must not hang on the network, and a silent download would make runs unreproducible)."""
    import torch

    path = imagenet_weights_path(arch)
    if not path.is_file():
        raise AudioclfError(
            f"train.model_params.{arch}.pretrained: imagenet weights for {arch} not found at {path}; copy "
            f"{IMAGENET_WEIGHTS[arch]} there (TORCH_HOME={os.environ.get('TORCH_HOME', '~/.cache/torch')}) "
            "or set pretrained: none"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, ValueError, OSError, pickle.UnpicklingError) as exc:
        raise AudioclfError(f"{path}: unreadable {arch} weights ({brief(exc)}); replace the file") from exc


def adapt_first_conv(weight, in_channels: int):
    """RGB filters (out, 3, k, k) → (out, in_channels, k, k) with the same response scale:
    summed for one channel (a grey image is R=G=B), else tiled and scaled by 3/in_channels
    (timm's `adapt_input_conv`)."""
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = math.ceil(in_channels / weight.shape[1])
    return weight.repeat(1, repeats, 1, 1)[:, :in_channels] * (weight.shape[1] / in_channels)


def build_resnet(arch: str, in_channels: int, n_classes: int, params: ResNetParams):
    """With `pretrained: imagenet` the weights are read from the local torch cache (never
    downloaded at run time) and conv1's RGB filters are adapted by `adapt_first_conv`."""
    import torch
    import torchvision
    from torch import nn

    net = getattr(torchvision.models, arch)(weights=None)
    if params.pretrained == "imagenet":
        try:
            net.load_state_dict(load_imagenet_state(arch))
        except RuntimeError as exc:
            path = imagenet_weights_path(arch)
            raise AudioclfError(
                f"{path}: not a torchvision {arch} state_dict ({brief(exc)}); replace the file"
            ) from exc
    old = net.conv1
    net.conv1 = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
    if params.pretrained == "imagenet":
        with torch.no_grad():
            net.conv1.weight.copy_(adapt_first_conv(old.weight, in_channels))
    net.fc = nn.Sequential(nn.Dropout(params.dropout), nn.Linear(net.fc.in_features, n_classes))
    return net


@register("resnet18", params=ResNetParams, head="fc")
def build_resnet18(in_channels: int, n_classes: int, params: ResNetParams):
    return build_resnet("resnet18", in_channels, n_classes, params)


@register("resnet34", params=ResNetParams, head="fc")
def build_resnet34(in_channels: int, n_classes: int, params: ResNetParams):
    return build_resnet("resnet34", in_channels, n_classes, params)
