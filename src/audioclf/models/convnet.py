"""`convnet`: the tutorials' conv-BN-ReLU-pool stack, then global average pooling and a linear head."""

from __future__ import annotations

from dataclasses import dataclass, field

from audioclf.config import fail
from audioclf.models import register


@dataclass(frozen=True)
class ConvNetParams:
    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 128])  # one conv block per width
    dropout: float = 0.2  # before the linear head

    def __post_init__(self) -> None:
        if not self.channels or any(c < 1 for c in self.channels):
            fail("channels", f"must be a non-empty list of positive widths, got {self.channels}")
        if not 0.0 <= self.dropout < 1.0:
            fail("dropout", f"must be in [0, 1), got {self.dropout}")


def conv_block(c_in: int, c_out: int):
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2, ceil_mode=True),
    )


@register("convnet", params=ConvNetParams, head="head")
def build(in_channels: int, n_classes: int, params: ConvNetParams):
    from collections import OrderedDict
    from itertools import pairwise

    from torch import nn

    widths = [in_channels, *params.channels]
    return nn.Sequential(
        OrderedDict(
            features=nn.Sequential(*[conv_block(a, b) for a, b in pairwise(widths)]),
            pool=nn.AdaptiveAvgPool2d(1),
            head=nn.Sequential(nn.Flatten(), nn.Dropout(params.dropout), nn.Linear(widths[-1], n_classes)),
        )
    )
