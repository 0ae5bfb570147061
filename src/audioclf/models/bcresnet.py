"""`bcresnet`: broadcasted residual learning for keyword spotting (Kim et al., Interspeech 2021,
"BC-ResNet"), at width multiplier `width` (BC-ResNet-`width`). Frequency-depthwise convs with
sub-spectral norm on the 2-D map, temporal (dilated) depthwise convs on its frequency average,
broadcast back. Tiny in parameters and MACs; made for 1 s speech clips (its depthwise convs are
memory-bound on a CPU, so it trains slowly on long clips)."""

from __future__ import annotations

from dataclasses import dataclass

from audioclf.config import fail
from audioclf.models import register

STAGES = ((2, 1, 1), (2, 2, 2), (4, 2, 4), (4, 1, 8))  # (blocks, frequency stride, time dilation)
WIDTHS = (16, 8, 12, 16, 20, 32)  # stem, four stages, last 1x1 conv: times `width`


@dataclass(frozen=True)
class BCResNetParams:
    width: float = 2.0  # channel multiplier: BC-ResNet-1 ... -8
    sub_bands: int = 4  # sub-spectral norm bands (1 = plain BatchNorm)
    dropout: float = 0.1  # spatial dropout inside each block

    def __post_init__(self) -> None:
        if not 0.25 <= self.width <= 16:
            fail("width", f"must be in 0.25..16, got {self.width}")
        if self.sub_bands < 1:
            fail("sub_bands", f"must be >= 1, got {self.sub_bands}")
        if not 0.0 <= self.dropout < 1.0:
            fail("dropout", f"must be in [0, 1), got {self.dropout}")


@register("bcresnet", params=BCResNetParams, head="head")
def build(in_channels: int, n_classes: int, params: BCResNetParams):
    from collections import OrderedDict

    from torch import nn

    from audioclf.models._layers import BroadcastBlock, TimeHead, conv_bn_relu

    c = [max(4, round(w * params.width)) for w in WIDTHS]
    blocks, prev = [], c[0]
    for stage, (n, f_stride, dilation) in enumerate(STAGES):
        for i in range(n):
            stride = f_stride if i == 0 else 1
            blocks.append(BroadcastBlock(prev, c[stage + 1], stride, dilation, params.dropout, params.sub_bands))
            prev = c[stage + 1]
    return nn.Sequential(
        OrderedDict(
            stem=conv_bn_relu(in_channels, c[0], 5, (2, 1)),
            blocks=nn.Sequential(*blocks),
            tail=nn.Sequential(
                nn.Conv2d(prev, prev, 5, padding=2, groups=prev, bias=False), conv_bn_relu(prev, c[5], 1)
            ),
            head=TimeHead(c[5], n_classes),
        )
    )
