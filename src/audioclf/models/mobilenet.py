"""`mobilenet`: depthwise-separable inverted residuals as in MobileNetV2/V3 and EfficientAT's MN
models (Schmid et al., ICASSP 2023), without their pre-training: a strided stem, inverted
residual blocks (squeeze-excite from 40 channels on), a 1x1 conv to `last_channels`, mean over
frequency, mean + max over time. Trains with channels-last memory on a CPU (its depthwise convs
are ~3x faster so)."""

from __future__ import annotations

from dataclasses import dataclass

from audioclf.config import fail
from audioclf.models import register

BLOCKS = ((1, 16, 1, 1), (4, 24, 2, 2), (4, 40, 2, 2), (4, 80, 2, 2), (4, 112, 1, 1), (4, 160, 1, 2))
# (expansion, width before `width` scaling, blocks, stride of the first)


@dataclass(frozen=True)
class MobileNetParams:
    width: float = 1.0  # channel multiplier of every block (rounded to multiples of 8)
    last_channels: int = 320  # the 1x1 conv before pooling
    squeeze_excite: bool = True
    dropout: float = 0.2  # before the linear head

    def __post_init__(self) -> None:
        if not 0.1 <= self.width <= 4:
            fail("width", f"must be in 0.1..4, got {self.width}")
        if self.last_channels < 1:
            fail("last_channels", f"must be >= 1, got {self.last_channels}")
        if not 0.0 <= self.dropout < 1.0:
            fail("dropout", f"must be in [0, 1), got {self.dropout}")


@register("mobilenet", params=MobileNetParams, head="head")
def build(in_channels: int, n_classes: int, params: MobileNetParams):
    from collections import OrderedDict

    from torch import nn

    from audioclf.models._layers import InvertedResidual, MeanMaxHead, conv_bn_relu

    def scaled(c: int) -> int:
        return max(8, round(c * params.width / 8) * 8)

    prev = scaled(16)
    layers: list[nn.Module] = [conv_bn_relu(in_channels, prev, 3, 2)]
    for expand, width, n, stride in BLOCKS:
        for i in range(n):
            se = params.squeeze_excite and width >= 40
            layers.append(InvertedResidual(prev, scaled(width), expand, stride if i == 0 else 1, se))
            prev = scaled(width)
    layers.append(conv_bn_relu(prev, params.last_channels, 1))
    return nn.Sequential(
        OrderedDict(features=nn.Sequential(*layers), head=MeanMaxHead(params.last_channels, n_classes, params.dropout))
    )
