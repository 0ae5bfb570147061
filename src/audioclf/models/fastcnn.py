"""`fastcnn`: early downsampling for real clip lengths. A strided 5x5 stem and a strided 3x3 conv
quarter the mel bins and the frame rate before any wide layer, then one 3x3 conv-BN-ReLU + 2x2
max-pool per width; mean over frequency, mean + max over time, linear head. At 64 mels and a
10 ms hop it costs ~1/5 of `convnet`'s MACs per second of audio (bench/bench_models.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from audioclf.config import fail
from audioclf.models import register


@dataclass(frozen=True)
class FastCNNParams:
    channels: list[int] = field(default_factory=lambda: [24, 48, 96, 192])  # stem width, then one stage each
    convs_per_stage: int = 1  # 3x3 conv-BN-ReLU layers per stage (2 doubles the cost past the stem)
    dropout: float = 0.2  # before the linear head

    def __post_init__(self) -> None:
        if len(self.channels) < 2 or any(c < 1 for c in self.channels):
            fail("channels", f"must list at least 2 positive widths (stem, stages), got {self.channels}")
        if self.convs_per_stage < 1:
            fail("convs_per_stage", f"must be >= 1, got {self.convs_per_stage}")
        if not 0.0 <= self.dropout < 1.0:
            fail("dropout", f"must be in [0, 1), got {self.dropout}")


@register("fastcnn", params=FastCNNParams, head="head")
def build(in_channels: int, n_classes: int, params: FastCNNParams):
    from collections import OrderedDict
    from itertools import pairwise

    from torch import nn

    from audioclf.models._layers import MeanMaxHead, conv_bn_relu

    stem = params.channels[0]
    layers: list[nn.Module] = [conv_bn_relu(in_channels, stem, 5, 2), conv_bn_relu(stem, stem, 3, 2)]
    for a, b in pairwise(params.channels):
        layers += [conv_bn_relu(a, b), *[conv_bn_relu(b, b) for _ in range(params.convs_per_stage - 1)]]
        layers.append(nn.MaxPool2d(2, ceil_mode=True))
    return nn.Sequential(
        OrderedDict(features=nn.Sequential(*layers), head=MeanMaxHead(params.channels[-1], n_classes, params.dropout))
    )
