"""torch building blocks of the compact models (fastcnn, bcresnet, mobilenet). Private (the
leading `_`): the registry does not import it, the builders do, after torch is wanted."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_relu(
    c_in: int, c_out: int, kernel: int = 3, stride: int | tuple[int, int] = 1, groups: int = 1
) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class MeanMaxHead(nn.Module):
    """(B, C, F, T) → logits: mean over frequency, then mean + max over time (a short event in a
    long clip still counts), dropout, linear."""

    def __init__(self, channels: int, n_classes: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.mean(2)
        return self.fc(self.dropout(h.mean(2) + h.amax(2)))


class SubSpectralNorm(nn.Module):
    """BatchNorm per frequency sub-band (BC-ResNet): the statistics of low and high bands differ.
    Falls back to one BatchNorm when the bins do not split evenly into `sub_bands`."""

    def __init__(self, channels: int, sub_bands: int) -> None:
        super().__init__()
        self.sub_bands = sub_bands
        self.bands = nn.BatchNorm2d(channels * sub_bands)
        self.whole = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, t = x.shape
        if f % self.sub_bands:
            return self.whole(x)
        return self.bands(x.reshape(b, c * self.sub_bands, f // self.sub_bands, t)).reshape(b, c, f, t)


class BroadcastBlock(nn.Module):
    """BC-ResNet's block: a frequency-depthwise conv on the 2-D map, its average over frequency
    through a temporal depthwise (dilated) + pointwise conv, broadcast back and added."""

    def __init__(self, c_in: int, c_out: int, f_stride: int, dilation: int, dropout: float, sub_bands: int) -> None:
        super().__init__()
        self.residual = c_in == c_out and f_stride == 1
        self.project = nn.Identity() if c_in == c_out else conv_bn_relu(c_in, c_out, 1)
        self.freq = nn.Sequential(
            nn.Conv2d(c_out, c_out, (3, 1), (f_stride, 1), (1, 0), groups=c_out, bias=False),
            SubSpectralNorm(c_out, sub_bands),
        )
        self.time = nn.Sequential(
            nn.Conv2d(c_out, c_out, (1, 3), 1, (0, dilation), dilation=(1, dilation), groups=c_out, bias=False),
            nn.BatchNorm2d(c_out),
            nn.SiLU(inplace=True),
            nn.Conv2d(c_out, c_out, 1, bias=False),
            nn.Dropout2d(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.project(x)
        h = self.freq(x)
        out = h + self.time(h.mean(2, keepdim=True))
        return torch.relu(out + x if self.residual else out)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        mid = max(8, channels // reduction)
        self.fc = nn.Sequential(
            nn.Linear(channels, mid), nn.ReLU(inplace=True), nn.Linear(mid, channels), nn.Hardsigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean((2, 3)))[:, :, None, None]


class InvertedResidual(nn.Module):
    """MobileNetV2/V3 block: 1x1 expansion, depthwise 3x3 (strided), optional squeeze-excite,
    linear 1x1 projection; a residual when the shape is kept."""

    def __init__(self, c_in: int, c_out: int, expand: int, stride: int, se: bool) -> None:
        super().__init__()
        mid = c_in * expand
        layers: list[nn.Module] = [] if expand == 1 else [conv_bn_relu(c_in, mid, 1)]
        layers.append(conv_bn_relu(mid, mid, 3, stride, groups=mid))
        if se:
            layers.append(SqueezeExcite(mid))
        layers += [nn.Conv2d(mid, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class TimeHead(nn.Module):
    """BC-ResNet's head: mean over frequency, a 1x1 conv to the classes per frame, mean over time."""

    def __init__(self, channels: int, n_classes: int) -> None:
        super().__init__()
        self.fc = nn.Conv1d(channels, n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(2)).mean(2)
