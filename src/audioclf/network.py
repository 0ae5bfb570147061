"""The trained network: a registered architecture (`audioclf.models`) behind the training-set
normalisation. `Classifier` holds the normalisation as buffers, so the exported ONNX graph and
`predict` need nothing but the raw features."""

from __future__ import annotations

import torch
from torch import nn

from audioclf import models


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
    name: str, in_channels: int, n_classes: int, mean: torch.Tensor, std: torch.Tensor, params: object | None = None
) -> Classifier:
    """mean/std: (channels, freq) training statistics; `params`: the architecture's params
    dataclass (None = its defaults)."""
    arch = models.get(name)
    return Classifier(arch.build(in_channels, n_classes, params if params is not None else arch.params()), mean, std)


def backbone_parameters(name: str, net: nn.Module) -> list[nn.Parameter]:
    """Parameters frozen during `train.freeze_epochs`: everything but the registered head."""
    head_ids = {id(p) for p in getattr(net, models.get(name).head).parameters()}
    return [p for p in net.parameters() if id(p) not in head_ids]
